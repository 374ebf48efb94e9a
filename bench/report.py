"""What every benchmark shares: machine line, a measured subprocess, publishing the figures.

Each benchmark writes its section to docs/bench/<name>.md; docs/benchmarks.md is rebuilt from
all sections, so one page holds every figure with the command that produced it.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ROOT / "docs" / "bench"
ORDER = [
    "cli_startup",
    "records_io",
    "judge_throughput",
    "rollout_throughput",
    "logprob_mismatch",
    "train_overhead",
    "train_overhead_2proc",
    "code_judge",
]


def machine() -> str:
    return (
        f"{datetime.now(UTC):%Y-%m-%d}, Python {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs"
    )


def rlctl() -> str:
    return str(Path(sys.executable).with_name("rlctl"))


def measured(cmd: list[str], stdin: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of `cmd` reading `stdin`, in a fresh process."""
    probe = (
        "import resource, subprocess, sys\n"
        f"p = subprocess.run(sys.argv[1:], stdin=open({str(stdin)!r}, 'rb'), "
        "stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
        "assert p.returncode == 0, p.stderr.decode()\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return time.perf_counter() - t0, int(out.stdout.strip()) / 1024


def publish(name: str, lines: list[str]) -> None:
    SECTIONS.mkdir(parents=True, exist_ok=True)
    text = "\n".join([*lines, ""])
    (SECTIONS / f"{name}.md").write_text(text)
    print(text, end="")
    parts = ["# Benchmarks", "", "Run on demand with `make bench`; never asserted in tests.", ""]
    names = [n for n in ORDER if (SECTIONS / f"{n}.md").exists()]
    names += sorted(p.stem for p in SECTIONS.glob("*.md") if p.stem not in ORDER)
    for n in names:
        body = (SECTIONS / f"{n}.md").read_text().replace("\n# ", "\n## ")
        body = re.sub(r"\]\((\w+\.png)\)", r"](bench/\1)", body)  # images sit beside the sections
        parts.append(body.replace("# ", "## ", 1) if body.startswith("# ") else body)
    (ROOT / "docs" / "benchmarks.md").write_text("\n".join(parts))


@contextlib.contextmanager
def vllm_server(model: Path, store: Path, *flags: str) -> Iterator[str]:
    """`rlctl serve vllm` on a free port; yields its base URL, stops it afterwards."""
    from rlctl.store import Store
    from rlctl.store.refs import find_endpoint

    proc = subprocess.Popen(
        [
            rlctl(),
            "--store",
            str(store),
            "serve",
            "vllm",
            "--model",
            str(model),
            "--port",
            "0",
            *flags,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 900
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"vLLM failed to start (see {store}/artifacts/*/server.log)")
            try:
                url = find_endpoint(Store(store), "latest")["url"]
                break
            except Exception:  # noqa: BLE001 (not registered yet)
                if time.monotonic() > deadline:
                    raise SystemExit("vLLM never became healthy") from None
                time.sleep(1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)


def tiny(root: Path) -> Path:
    out = root / "tiny"
    if not out.exists():
        subprocess.run(
            [rlctl(), "--store", str(root / "store"), "model", "tiny", str(out)], check=True
        )
    return out
