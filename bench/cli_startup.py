"""Wall time of `rlctl --help` next to `python -c pass` (target: under 0.3 s on a 2-core box).

Run: `make bench` or `.venv/bin/python bench/cli_startup.py [--runs N]`. Writes
docs/bench/cli_startup.md; never asserted in tests (timings belong to benchmarks).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from report import machine, publish

TARGET_S = 0.3


def wall(cmd: list[str], runs: int) -> list[float]:
    subprocess.run(cmd, capture_output=True, check=True)  # warm the file cache
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    script = Path(sys.executable).with_name("rlctl")
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "rlctl --help": [str(script), "--help"],
        "rlctl data pull --help": [str(script), "data", "pull", "--help"],
        "rlctl store path": [str(script), "store", "path"],
    }
    rows = []
    for name, cmd in cases.items():
        t = wall(cmd, args.runs)
        rows.append((name, statistics.median(t), min(t), max(t)))
    help_median = rows[1][1]
    verdict = "meets" if help_median < TARGET_S else "MISSES"
    lines = [
        "# CLI start-up",
        "",
        f"`{' '.join(['python', 'bench/cli_startup.py', '--runs', str(args.runs)])}` on "
        f"{machine()}, torch installed in the same venv.",
        "",
        "| command | median s | min s | max s |",
        "| --- | --- | --- | --- |",
        *(f"| `{n}` | {m:.3f} | {lo:.3f} | {hi:.3f} |" for n, m, lo, hi in rows),
        "",
        f"`rlctl --help` {verdict} the {TARGET_S} s target "
        f"({help_median - rows[0][1]:.3f} s above a bare interpreter).",
        "",
    ]
    publish("cli_startup", lines)


if __name__ == "__main__":
    main()
