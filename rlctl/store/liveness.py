"""Is a run marked `running` still alive? Answers differ by where it ran.

On this host the pid is checked together with its start time (a pid can be reused). A run on
another node (a Slurm job writing to the shared store) is judged by its heartbeat file, which the
run touches every `HEARTBEAT_S`; silence for `stale_after()` seconds means it died without a word.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

HEARTBEAT_S = 30.0
STALE_ENV = "RLCTL_STALE_AFTER"


def stale_after() -> float:
    return float(os.environ.get(STALE_ENV, 10 * 60))


def hostname() -> str:
    return socket.gethostname()


def process_started(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def death_reason(run: dict[str, Any], run_dir: Path) -> str | None:
    """Why a `running` run is in fact dead, or None if it may still be alive."""
    if run.get("status") != "running":
        return None
    if run.get("host") == hostname():
        import psutil  # here: `rlctl sql` over ended runs never needs it

        pid = run.get("pid")
        if not isinstance(pid, int):
            return "run.json has no pid"
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return f"process {pid} was killed"
            if abs(proc.create_time() - float(run.get("pid_started") or 0)) > 1.0:
                return f"process {pid} is gone (pid reused)"
        except psutil.NoSuchProcess:
            return f"process {pid} is gone (killed?)"
        except psutil.Error:
            return None
        return None
    beat = run_dir / "heartbeat"
    try:
        last = beat.stat().st_mtime
    except FileNotFoundError:
        last = (run_dir / "run.json").stat().st_mtime
    silent = time.time() - last
    if silent > stale_after():
        return f"no heartbeat from {run.get('host')} for {silent:.0f} s"
    return None
