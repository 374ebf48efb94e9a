"""A warm `rlctl` for the test suite: one process per pytest worker imports torch, transformers,
TRL, datasets and lm-eval once, then forks a child per `rlctl` command a test runs.

Why: a `train` or `eval` process spends ~7 CPU-seconds importing those libraries before it does
a tenth of a second of work, and the suite runs hundreds of them on two cores. The child is
still a real process running the real entry point (`rlctl.cli:run`) with the caller's argv,
environment, working directory, umask and stdin/stdout/stderr (passed over the socket as file
descriptors), so pipes, exit codes, signals and the store's pid liveness checks behave as they do
for the installed executable. What differs: the libraries were imported before the command's
environment was set (tests set nothing those imports read), and every child shares the server's
hash seed. Tests of import discipline run the cold executable directly (`tests/test_cli.py`).

Protocol (`tests/rlctl_client.py` is the other side): the client sends a 4-byte length with its
fds 0, 1, 2 attached, then that many bytes of JSON {argv, cwd, env, umask}; the server answers
with the child's pid (4 bytes), and when the child ends its wait status (4 bytes). A client that
dies (SIGKILL) closes the connection; the server then kills the child with SIGKILL, as the kernel
would have killed a real process.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import struct
import sys
from pathlib import Path
from typing import Any


def preload() -> None:
    """What the heavy stages import, so that no child imports it again."""
    import duckdb  # noqa: F401
    import psutil  # noqa: F401
    import pyarrow  # noqa: F401
    import torch  # noqa: F401
    import transformers
    import yaml  # noqa: F401

    for name in ("AutoModelForCausalLM", "AutoTokenizer", "Trainer", "TrainingArguments"):
        getattr(transformers, name)
    import trl
    from transformers.models.qwen2 import modeling_qwen2  # noqa: F401

    for name in ("SFTTrainer", "SFTConfig", "DPOTrainer", "DPOConfig", "GRPOTrainer", "GRPOConfig"):
        getattr(trl, name)
    import datasets  # noqa: F401
    import lm_eval.evaluator
    import lm_eval.tasks  # noqa: F401

    import rlctl.cli  # noqa: F401


def _read_request(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    head, fds, _, _ = socket.recv_fds(conn, 4, 3)
    (size,) = struct.unpack("!I", head)
    body = b""
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise ConnectionError("client went away")
        body += chunk
    return json.loads(body), fds


def serve(path: str) -> dict[str, Any] | None:
    """The accept loop. Returns only in a child, with the command it must run."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    preload()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    parent = os.getppid()
    by_conn: dict[socket.socket, int] = {}  # clients still watched
    by_pid: dict[int, socket.socket] = {}  # children not yet reaped
    while True:
        try:
            ready, _, _ = select.select([listener, wake_r, *by_conn], [], [], 5.0)
        except InterruptedError:
            continue
        if os.getppid() != parent:  # the pytest worker is gone
            Path(path).unlink(missing_ok=True)
            return None
        if listener in ready:
            conn, _ = listener.accept()
            try:
                spec, fds = _read_request(conn)
            except (OSError, ValueError):
                conn.close()
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                for s in (listener, conn, *by_pid.values()):
                    s.close()
                os.close(wake_r)
                os.close(wake_w)
                for target, fd in enumerate(fds):
                    os.dup2(fd, target)
                    os.close(fd)
                return spec
            for fd in fds:
                os.close(fd)
            by_conn[conn] = pid
            by_pid[pid] = conn
            conn.sendall(struct.pack("!i", pid))
        if wake_r in ready:
            os.read(wake_r, 4096)
        for conn in [c for c in ready if c in by_conn]:  # readable: the client died
            pid = by_conn.pop(conn)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        while by_pid:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            conn = by_pid.pop(pid, None)
            if conn is None:
                continue
            by_conn.pop(conn, None)
            with contextlib.suppress(OSError):
                conn.sendall(struct.pack("!i", status))
            conn.close()


def run_command(spec: dict[str, Any]) -> None:
    """In the child: become the command the client asked for, then exit as rlctl exits."""
    import random

    os.chdir(spec["cwd"])
    os.umask(spec["umask"])
    os.environ.clear()
    os.environ.update(spec["env"])
    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    sys.argv = spec["argv"]
    from rlctl.cli import run

    run(spec["argv"][1:])


if __name__ == "__main__":
    command = serve(sys.argv[1])
    if command is not None:
        run_command(command)
