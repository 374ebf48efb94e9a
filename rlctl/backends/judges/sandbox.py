"""Run untrusted code against tests, many at once, each in its own sandbox.

Layers, outermost first (see docs/judges.md for what each stops):
1. own session and process group, killed whole at the wall-clock timeout;
2. rlimits: CPU seconds, address space, file size, process count, no core files;
3. as root: a private network namespace (no network), a mount namespace where everything but
   the program's own directory is read-only, and a per-worker unprivileged uid whose leftover
   processes are all killed afterwards;
4. an audit hook in the harness that refuses escapes with a readable reason;
5. a minimal environment: nothing inherited, so no secret leaks in.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).parent
LAUNCHER = HERE / "_sandbox_launch.py"
HARNESS = HERE / "_sandbox_harness.py"
SANDBOX_UID_BASE = 61000  # per-worker uids when running as root: 61000, 61001, ...
# Interpreters to try in order: ours, then system ones an unprivileged uid can execute.
FALLBACK_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3")
_SIGNAL_REASONS = {
    signal.SIGXCPU: "CPU time limit",
    signal.SIGXFSZ: "file size limit",
    signal.SIGSEGV: "segmentation fault (memory limit?)",
    signal.SIGKILL: "killed",
}


@dataclass
class Result:
    passed: bool
    reason: str
    tests: int = 0
    failed_test: int | None = None
    failed: str | None = None
    seconds: float = 0.0
    output: str = ""
    isolation: dict[str, Any] = field(default_factory=dict)

    def verdict(self) -> dict[str, Any]:
        out = {"passed": self.passed, "reason": self.reason, "tests": self.tests}
        if self.failed_test is not None:
            out |= {"failed_test": self.failed_test, "failed": self.failed}
        if self.output:
            out["output"] = self.output
        return out | {"seconds": round(self.seconds, 3)}


def split_tests(reference: str) -> list[str]:
    """Each top-level statement of the reference is run (and reported) on its own."""
    tree = ast.parse(reference)
    return [ast.get_source_segment(reference, node) or ast.unparse(node) for node in tree.body]


class Sandbox:
    def __init__(
        self,
        workers: int | None = None,
        timeout: float = 5.0,
        memory_mb: int = 1024,
        fsize_mb: int = 16,
        nproc: int = 32,
    ) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.fsize_mb = fsize_mb
        self.nproc = nproc
        self.root = os.geteuid() == 0
        self._slots: queue.Queue[int] = queue.Queue()
        for i in range(self.workers):
            self._slots.put(i)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="rlctl-sandbox")

    def run_many(self, jobs: list[tuple[str, list[str]]]) -> list[Result]:
        """(code, tests) pairs, run in parallel; results in order."""
        return list(self._pool.map(lambda job: self.run(*job), jobs))

    def run(self, code: str, tests: list[str]) -> Result:
        slot = self._slots.get()
        try:
            return self._run(code, tests, slot)
        finally:
            self._slots.put(slot)

    def _run(self, code: str, tests: list[str], slot: int) -> Result:
        uid = SANDBOX_UID_BASE + slot if self.root else None
        workdir = Path(tempfile.mkdtemp(prefix="rlctl-sandbox-"))
        try:
            (workdir / "solution.py").write_text(code)
            (workdir / "tests.json").write_text(json.dumps(tests))
            shutil.copy(HARNESS, workdir / "_harness.py")
            if uid is not None:
                for p in [workdir, *workdir.iterdir()]:
                    os.chown(p, uid, uid)
            nonce = secrets.token_hex(16)
            t0 = time.monotonic()
            returncode, timed_out = self._launch(workdir, uid, nonce)
            seconds = time.monotonic() - t0
            return self._result(workdir, nonce, returncode, timed_out, seconds)
        finally:
            if uid is not None:
                _kill_uid(uid)
            shutil.rmtree(workdir, ignore_errors=True)

    def _launch(self, workdir: Path, uid: int | None, nonce: str) -> tuple[int, bool]:
        cfg = {
            "dir": str(workdir.resolve()),
            "cpu_s": max(1, int(self.timeout) + 1),
            "memory_mb": self.memory_mb,
            "fsize_mb": self.fsize_mb,
            "nproc": self.nproc if uid is not None else _own_processes() + self.nproc,
            "uid": uid,
            "env": {
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "HOME": str(workdir),
                "TMPDIR": str(workdir),
                "LANG": "C.UTF-8",
                "PYTHONHASHSEED": "0",
                "PYTHONDONTWRITEBYTECODE": "1",
            },
            "pythons": [sys.executable, *(p for p in FALLBACK_PYTHONS if Path(p).exists())],
        }
        proc = subprocess.Popen(
            [sys.executable, "-I", "-B", str(LAUNCHER), json.dumps(cfg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={"PATH": cfg["env"]["PATH"]},
            cwd=workdir,
        )
        try:
            assert proc.stdin is not None
            proc.stdin.write(nonce.encode() + b"\n")
            proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            return proc.wait(timeout=self.timeout), False
        except subprocess.TimeoutExpired:
            _killpg(proc.pid)
            return proc.wait(), True
        finally:
            _killpg(proc.pid)  # stragglers left in the group after a normal exit

    def _result(
        self, workdir: Path, nonce: str, returncode: int, timed_out: bool, seconds: float
    ) -> Result:
        events = _read_reports(workdir / "report.jsonl", nonce)
        output = _tail(workdir / "output.txt")
        isolation = _read_json(workdir / "isolation.json")
        common = {"seconds": seconds, "output": output, "isolation": isolation}
        if timed_out:
            return Result(False, f"timeout after {self.timeout:g} s", **common)
        last = events[-1] if events else None
        if last and last.get("stage") == "done" and returncode == 0:
            return Result(True, "passed", tests=last["tests"], **common)
        if last and last.get("stage") == "test":
            i = last["index"]
            return Result(
                False, f"test {i} failed: {last['error'] or 'assertion'}", failed_test=i, **common
            )
        if last and last.get("stage") in ("compile", "solution"):
            return Result(False, last["error"], **common)
        if returncode < 0:
            sig = -returncode
            why = _SIGNAL_REASONS.get(sig, f"signal {signal.Signals(sig).name}")
            return Result(False, f"killed by {why}", **common)
        if returncode == 127 and not isolation.get("python"):
            return Result(False, "sandbox could not start python", **common)
        return Result(False, f"exited with status {returncode} before the tests finished", **common)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _read_reports(path: Path, nonce: str) -> list[dict[str, Any]]:
    """Only lines with the nonce count: anything the program forged without it is ignored."""
    events = []
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except FileNotFoundError:
        return events
    prefix = nonce.encode() + b" "
    for line in data.splitlines():
        if line.startswith(prefix):
            try:
                events.append(json.loads(line[len(prefix) :]))
            except ValueError:
                continue
    return events


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _killpg(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _kill_uid(uid: int) -> None:
    """A process that left our process group (setsid) still runs as the slot's uid."""
    for proc in psutil.process_iter(["uids"]):
        try:
            if proc.info["uids"] and proc.info["uids"].real == uid:
                proc.kill()
        except psutil.Error:
            continue


def _own_processes() -> int:
    me = os.getuid()
    return sum(
        1 for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == me
    )
