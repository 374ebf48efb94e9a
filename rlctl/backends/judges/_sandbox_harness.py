"""Sandbox harness: runs solution.py, then each test statement, reporting every outcome.

Copied into the program's directory and run by the launcher. Before any untrusted code runs,
it installs an audit hook (irremovable from Python) that refuses writes and deletes outside the
directory, signals, sockets, subprocesses and ctypes, so a hostile program fails with a reason
rather than silently doing harm; the OS limits of the launcher are the second wall.

Reports go to report.jsonl, each line prefixed by a nonce read from stdin, which untrusted code
is never given; the judge counts a pass only when the final `done` line is there.
"""

import json
import os
import sys

ROOT = os.path.realpath(".")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_PATH_EVENTS = {
    "os.remove",
    "os.rmdir",
    "os.rename",
    "os.replace",
    "os.truncate",
    "os.chmod",
    "os.chown",
    "os.link",
    "os.symlink",
    "os.mkdir",
    "os.utime",
    "shutil.rmtree",
    "shutil.move",
    "shutil.copyfile",
}
_PROCESS_EVENTS = {
    "os.fork",
    "os.forkpty",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "subprocess.Popen",
    "pty.spawn",
}


def _inside(path):
    if isinstance(path, int):
        return True
    p = os.path.realpath(os.fsdecode(path))
    return p == ROOT or p.startswith(ROOT + os.sep)


def _hook(event, args):
    if event == "open":
        path, mode, flags = args
        writing = (mode and any(c in str(mode) for c in "wax+")) or (flags or 0) & _WRITE_FLAGS
        if writing and not _inside(path):
            raise PermissionError(f"sandbox: write outside its directory: {path}")
    elif event in _PATH_EVENTS:
        for p in args[:2]:
            if isinstance(p, (str, bytes, os.PathLike)) and not _inside(p):
                raise PermissionError(f"sandbox: {event} outside its directory: {p}")
    elif event in ("os.kill", "os.killpg", "signal.pthread_kill"):
        raise PermissionError("sandbox: sending signals is not allowed")
    elif event.startswith("socket."):
        raise PermissionError("sandbox: network is disabled")
    elif event in _PROCESS_EVENTS:
        raise PermissionError("sandbox: starting processes is not allowed")
    elif event.startswith("ctypes."):
        raise PermissionError("sandbox: ctypes is not allowed")


def main():
    nonce = sys.stdin.readline().strip()
    with open("solution.py") as f:
        source = f.read()
    with open("tests.json") as f:
        tests = json.load(f)
    report_fd = os.open("report.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    out_fd = os.open("output.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    sys.stdin = open(os.devnull)  # noqa: SIM115

    def report(**event):
        os.write(report_fd, (nonce + " " + json.dumps(event) + "\n").encode())

    sys.addaudithook(_hook)
    scope = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        code = compile(source, "solution.py", "exec")
    except SyntaxError as e:
        report(stage="compile", error=f"SyntaxError: {e.msg} (line {e.lineno})")
        return
    try:
        exec(code, scope)
    except BaseException as e:  # noqa: BLE001 (SystemExit included: the tests must still run)
        report(stage="solution", error=f"{type(e).__name__}: {e}"[:500])
        return
    for i, test in enumerate(tests):
        try:
            exec(compile(test, f"test_{i}", "exec"), scope)
        except AssertionError as e:
            report(stage="test", index=i, error=f"AssertionError: {e}"[:500] if str(e) else "")
            return
        except BaseException as e:  # noqa: BLE001
            report(stage="test", index=i, error=f"{type(e).__name__}: {e}"[:500])
            return
    report(stage="done", tests=len(tests))


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # no atexit handlers from untrusted code
