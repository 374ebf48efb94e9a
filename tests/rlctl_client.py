"""`rlctl ARGS` through the test suite's warm fork server (tests/forkserver.py), or the
installed executable when no server answers. Stands in for the executable: same argv, stdio,
exit code; SIGINT, SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 are passed on to the child, and a
child killed by a signal makes this process die of the same signal."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
from pathlib import Path

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


SCRIPT = Path(sys.executable).with_name("rlctl")


def _cold(argv: list[str]) -> None:
    if SCRIPT.exists():
        os.execv(SCRIPT, [str(SCRIPT), *argv])
    os.execv(sys.executable, [sys.executable, "-m", "rlctl", *argv])


def _recv_int(sock: socket.socket) -> int:
    data = b""
    while len(data) < 4:
        chunk = sock.recv(4 - len(data))
        if not chunk:
            raise ConnectionError("fork server went away")
        data += chunk
    return struct.unpack("!i", data)[0]


def main() -> None:
    argv = sys.argv[1:]
    path = os.environ.get("RLCTL_FORKSERVER")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if not path:
            raise OSError("no fork server")
        if os.environ.get("PYTHONPATH", "") != os.environ.get("RLCTL_FORKSERVER_PYTHONPATH"):
            raise OSError(
                "a PYTHONPATH of its own (a sitecustomize hook?) needs a fresh interpreter"
            )
        sock.connect(path)
    except OSError:
        sock.close()
        _cold(argv)
    umask = os.umask(0)
    os.umask(umask)
    body = json.dumps(
        {
            "argv": [str(SCRIPT), *argv],
            "cwd": str(Path.cwd()),
            "env": dict(os.environ),
            "umask": umask,
        }
    ).encode()
    socket.send_fds(sock, [struct.pack("!I", len(body))], [0, 1, 2])
    sock.sendall(body)
    pid = _recv_int(sock)
    for sig in FORWARDED:
        signal.signal(sig, lambda s, _f: os.kill(pid, s))
    # the child holds the stdio now: a reader downstream sees EOF when the child exits
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(null, fd)
    status = _recv_int(sock)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
