"""Record IO stays in constant memory and how fast it streams.

Pipes N gsm8k-shaped prompt records through `rlctl data validate` (a real process reading
stdin) for growing N and reports wall time, records/s and the peak RSS of that process. Flat
peak RSS across N is the claim; writes docs/bench/records_io.md.

Run: `make bench` or `.venv/bin/python bench/records_io.py [--sizes 10000,100000,400000]`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import orjson
from report import machine, measured, publish, rlctl

RECORD = {
    "id": "",
    "messages": [{"role": "user", "content": "Janet's ducks lay 16 eggs per day. " * 8}],
    "reference": "18",
    "source": "gsm8k",
    "meta": {"split": "test", "solution": "16 - 3 - 4 = 9\n#### 18"},
    "run_id": "bench",
}


def write_input(path: Path, n: int) -> None:
    with open(path, "wb") as f:
        for i in range(n):
            f.write(orjson.dumps({**RECORD, "id": f"bench/{i}"}) + b"\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="10000,100000,400000")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for n in sizes:
            path = Path(d) / f"in-{n}.jsonl"
            write_input(path, n)
            mb = path.stat().st_size / 2**20
            store = Path(d) / "store"
            secs, rss = measured(
                [rlctl(), "--store", str(store), "data", "validate", "--kind", "prompt"], path
            )
            rows.append((n, mb, secs, n / secs, rss))
    lines = [
        "# Record IO: streaming memory and throughput",
        "",
        f"`python bench/records_io.py --sizes {args.sizes}` on {machine()}, "
        f"{os.cpu_count()} CPUs. Each row pipes N prompt "
        "records into `rlctl data validate` (parse + validate + lineage), a fresh process.",
        "",
        "| records | input MiB | wall s | records/s | peak RSS MiB |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {n:,} | {mb:.1f} | {s:.2f} | {rate:,.0f} | {rss:.1f} |"
            for n, mb, s, rate, rss in rows
        ),
        "",
        f"Peak RSS grows {rows[-1][4] - rows[0][4]:+.1f} MiB from {rows[0][0]:,} to "
        f"{rows[-1][0]:,} records: memory does not depend on the input size.",
        "",
    ]
    publish("records_io", lines)


if __name__ == "__main__":
    main()
