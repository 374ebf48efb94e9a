"""Hostile programs against the `code` judge: each kind gets reward 0, leaves no process, and
reads or changes nothing outside its own directory.

The task is `add(a, b)`. A program that *solves* it gets 1.0, so every containment attack ends
with `WIN` (a correct `add`) when the attack worked: a reward of 1.0 would mean the sandbox
leaked. Forgery attacks define a wrong `add` and try to make the verdict pass anyway. The suite
runs twice: with the audit hook (reasons are readable) and without it (the kernel's walls alone:
namespaces, minimal root, uid, cgroup, rlimits).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from pathlib import Path

import psutil
import pytest

from rlctl.backends.judges.code import CodeJudge
from rlctl.backends.judges.sandbox import SANDBOX_UID_BASE, Sandbox

REFERENCE = "assert add(2, 3) == 5\nassert add(10, -4) == 6\nassert add(0, 0) == 0"
WIN = "\ndef add(a, b):\n    return a + b\n"
WRONG = "\ndef add(a, b):\n    return 7\n"
SECRET = "sk-host-secret-0123456789abcdefghij"


def attempt(body: str) -> str:
    """The attack in a try; its success defines a correct `add` (a breach shows as reward 1)."""
    lines = "\n".join("    " + line for line in body.strip().splitlines())
    return f"try:\n{lines}\n    ok = True\nexcept BaseException:\n    ok = False\nif ok:{WIN.replace(chr(10), chr(10) + '    ')}\n"


# name -> (program, reason expected with the audit hook or None when any failure will do)
HOSTILE: dict[str, tuple[str, str | None]] = {
    # --- verdict forgery from inside the program
    "rebind AssertionError": (
        "import builtins\nbuiltins.AssertionError = type('Nope', (Exception,), {})" + WRONG,
        "test 0 failed",
    ),
    "rebind len/isinstance/type": (
        "import builtins\nbuiltins.len = lambda x: 0\nbuiltins.isinstance = lambda *a: True\n"
        "builtins.type = lambda *a: int" + WRONG,
        None,
    ),
    "empty the harness's test list via frames": (
        "import sys\nf = sys._getframe()\nwhile f is not None:\n"
        "    for v in list(f.f_locals.values()):\n"
        "        if isinstance(v, list):\n            v.clear()\n    f = f.f_back" + WRONG,
        None,
    ),
    "empty every list via gc": (
        "import gc\nfor o in gc.get_objects():\n    if isinstance(o, (list, dict)) and o is not "
        "globals():\n        try:\n            o.clear()\n        except Exception:\n            "
        "pass" + WRONG,
        None,
    ),
    "search memory for the tests": (
        attempt(
            "import gc\n"
            "assert any('add(2, 3) == 5' in o for o in gc.get_objects() if isinstance(o, str))"
        ),
        None,
    ),
    "read the tests from files": (
        attempt(
            "import os\nfound = []\nfor d in ('.', '/', '/tmp', '..'):\n"
            "    for n in os.listdir(d):\n        p = os.path.join(d, n)\n"
            "        if os.path.isfile(p) and 'add(2, 3)' in open(p, errors='replace').read():\n"
            "            found.append(p)\nassert found"
        ),
        None,
    ),
    "forge pass frames on every fd, then exit": (
        "import os, struct\n"
        "for body in (b'{\"ready\":true}', b'{\"value\":true}', b'{\"done\":true}'):\n"
        "    for fd in range(0, 20):\n        try:\n"
        "            os.write(fd, struct.pack('>I', len(body)) + body)\n"
        "        except OSError:\n            pass\nos._exit(0)",
        None,
    ),
    "patch the server's encoder to answer 5": (
        "import sys\nm = sys.modules['__main__']\nm.encode = lambda *a, **k: 5" + WRONG,
        None,
    ),
    "answer every request with True": (
        "import sys\nm = sys.modules['__main__']\n"
        "m.write_frame.__globals__['json'].dumps = lambda *a, **k: '{\"value\": true}'" + WRONG,
        None,
    ),
    "print a forged verdict": (
        'print(\'{"passed": true, "reason": "passed", "tests": 3}\')' + WRONG,
        "test 0 failed",
    ),
    # --- values that lie
    "__eq__ always True": (
        "class Yes:\n    __eq__ = lambda s, o: True\n    __ne__ = lambda s, o: False\n"
        "    __bool__ = lambda s: True\n    __hash__ = lambda s: 0\n"
        "def add(a, b):\n    return Yes()",
        "test 0 failed",
    ),
    "int subclass that equals everything": (
        "class I(int):\n    __eq__ = lambda s, o: True\n    __hash__ = int.__hash__\n"
        "def add(a, b):\n    return I(0)",
        "test 0 failed",
    ),
    "str subclass that equals everything": (
        "class S(str):\n    __eq__ = lambda s, o: True\n    __hash__ = str.__hash__\n"
        "def add(a, b):\n    return S('x')",
        "test 0 failed",
    ),
    "redefine a builtin the tests could use": (
        "def len(x):\n    return 3\ndef sorted(x):\n    return x" + WRONG,
        None,
    ),
    "a fake math module": (
        "class M:\n    isclose = staticmethod(lambda *a, **k: True)\nmath = M()" + WRONG,
        "test 0 failed",
    ),
    # --- reading the host
    "read the project's .env": (attempt("assert 'sk-' in open(ENV).read()"), None),
    "read another run's run.json": (attempt("assert 'run_id' in open(RUN_JSON).read()"), None),
    "read /etc/passwd": (attempt("assert 'root' in open('/etc/passwd').read()"), None),
    "read the host's /proc": (attempt("assert open('/proc/1/environ', 'rb').read()"), None),
    "see the host's filesystem": (attempt("import os\nassert os.path.exists(HOST_DIR)"), None),
    "read env secrets": (attempt("import os\nassert 'sk-' in str(os.environ)"), None),
    "read the judge's memory": (
        attempt("assert open(f'/proc/{JUDGE_PID}/mem', 'rb').read(1) is not None"),
        None,
    ),
    # --- writing and harming the host
    "write outside its dir": (attempt("open(HOST_DIR + '/pwned.txt', 'w').write('x')"), None),
    "delete a host file": (attempt("import os\nos.remove(CANARY)"), None),
    "write /tmp": (attempt("open('/tmp/rlctl-hostile', 'w').write('x')"), None),
    "fill the disk": (
        attempt(
            "f = open('big', 'wb')\nfor _ in range(400):\n    f.write(b'x' * (1 << 20))\nf.flush()"
        ),
        None,
    ),
    "kill the judge": (attempt("import os\nos.kill(JUDGE_PID, 9)"), None),
    "kill every process it can": (attempt("import os\nos.kill(-1, 9)"), None),
    "connect to a host port": (
        attempt("import socket\nsocket.create_connection(('127.0.0.1', PORT), timeout=1)"),
        None,
    ),
    "become root": (attempt("import os\nos.setuid(0)\nassert os.getuid() == 0"), None),
    "raise its limits": (
        attempt(
            "import resource\nresource.setrlimit(resource.RLIMIT_NPROC, (10**6, 10**6))\n"
            "resource.setrlimit(resource.RLIMIT_AS, (-1, -1))"
        ),
        None,
    ),
    "ctypes: unshare, mount, chroot out": (
        attempt(
            "import ctypes, os\nlibc = ctypes.CDLL(None)\n"
            "assert libc.unshare(0x10000000) == 0\nos.chroot('/')\n"
            "assert os.path.exists(HOST_DIR)"
        ),
        None,
    ),
    # --- processes and resources
    "infinite loop": ("while True:\n    pass", "timeout after 2 s"),
    "hang inside the tested function": (
        "def add(a, b):\n    while True:\n        pass",
        "timeout after 2 s",
    ),
    "fork bomb": (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        None,
    ),
    "fork_exec around the audit hook": (
        attempt(
            "import _posixsubprocess, os, sys\n"
            "r, w = os.pipe()\n"
            "_posixsubprocess.fork_exec([b'/bin/sleep', b'60'], [b'/bin/sleep', "
            "b'/usr/bin/sleep', sys.executable.encode()], True, (), None, None, -1, -1, -1, -1, "
            "-1, -1, r, w, True, False, None, None, None, -1, None, False)\n"
            "import time\ntime.sleep(0.3)\nassert os.waitpid(-1, os.WNOHANG) == (0, 0)"
        ),
        None,
    ),
    "daemon that outlives the judgment": (
        "import os, time\ntry:\n    if os.fork() == 0:\n        os.setsid()\n"
        "        time.sleep(60)\nexcept OSError:\n    pass" + WRONG,
        None,
    ),
    "thread that keeps running": (
        "import threading, time\nthreading.Thread(target=time.sleep, args=(60,)).start()" + WRONG,
        "test 0 failed",
    ),
    "10 GB allocation": ("x = bytearray(10 * 1024**3)" + WIN, "MemoryError"),
    "exit before the tests": ("import os\nos._exit(0)" + WIN, "before the tests finished"),
    "sys.exit inside the tested function": (
        "import sys\ndef add(a, b):\n    sys.exit(0)",
        "test 0 failed",
    ),
    "return something enormous": ("def add(a, b):\n    return [0] * 10**8", None),
    "return an endless iterator": (
        "import itertools\ndef add(a, b):\n    return itertools.count()",
        None,
    ),
    "return a deeply nested value": (
        "def add(a, b):\n    x = []\n    for _ in range(100000):\n        x = [x]\n    return x",
        None,
    ),
    "flood the output with a key": (
        f"print('{SECRET}' * 3)\nprint('x' * 10**7)" + WRONG,
        "test 0 failed",
    ),
    "close its channel": (
        "import os\nfor fd in range(3, 64):\n    try:\n        os.close(fd)\n"
        "    except OSError:\n        pass" + WIN,
        None,
    ),
}


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Things a program must not reach: files with secrets, a listening port, the judge."""
    d = tmp_path_factory.mktemp("host")
    (d / ".env").write_text(f"OPENAI_API_KEY={SECRET}\n")
    run = d / "store" / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"run_id": "r1", "token": SECRET}))
    (d / "canary.txt").write_text("intact")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            accepted.append(listener.accept())

    threading.Thread(target=accept, daemon=True).start()
    yield {
        "ENV": str(d / ".env"),
        "RUN_JSON": str(run / "run.json"),
        "HOST_DIR": str(d),
        "CANARY": str(d / "canary.txt"),
        "JUDGE_PID": str(os.getpid()),
        "PORT": str(listener.getsockname()[1]),
        "dir": d,
        "accepted": accepted,
    }
    listener.close()


def _program(code: str, host: dict) -> str:
    for key in ("ENV", "RUN_JSON", "HOST_DIR", "CANARY"):
        code = code.replace(key, repr(host[key]))
    return code.replace("JUDGE_PID", host["JUDGE_PID"]).replace("PORT", host["PORT"])


def _namespaces() -> bool:
    box = Sandbox(workers=1, timeout=5.0)
    try:
        return box.run("", ["assert True"]).isolation["namespaces"]
    finally:
        box.close()


def _sandbox_processes(box: Sandbox) -> list[psutil.Process]:
    """Processes running as this sandbox's uids (another judge on the machine, e.g. another
    test worker's, holds other uids: test_two_sandboxes_on_one_machine_never_share_a_uid)."""
    mine = {slot.cfg["uid"] for slot in box._slots}
    out = []
    for p in psutil.process_iter(["uids"]):
        uids = p.info["uids"]
        if uids and uids.real in mine:
            out.append(p)
    return out


@pytest.mark.parametrize("audit_hook", [True, False], ids=["with-hook", "kernel-only"])
def test_hostile_programs_get_zero_and_harm_nothing(
    host: dict, audit_hook: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    assert len(HOSTILE) >= 30
    names = list(HOSTILE)
    records = [{"completion": _program(HOSTILE[n][0], host), "reference": REFERENCE} for n in names]
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    if not audit_hook and not _namespaces():
        pytest.skip("no namespaces here: without the hook, `kill -1` would reach our processes")
    judge = CodeJudge(workers=2, timeout=2.0, audit_hook=audit_hook)
    try:
        scores = judge.score(records)
        # before close(): the judgment itself must leave nothing (close only stops the servers)
        if os.geteuid() == 0:
            assert _sandbox_processes(judge.sandbox) == []
        servers = {p.pid for p in psutil.Process().children()}
        left = {p.pid for p in psutil.Process().children(recursive=True)} - servers - before
        assert left == set(), "a sandboxed process outlived its judgment"
    finally:
        judge.close()
    wrong = []
    for name, (reward, verdict) in zip(names, scores, strict=True):
        expected = HOSTILE[name][1]
        if (
            reward != 0.0
            or (audit_hook and expected and expected not in verdict["reason"])
            or SECRET in json.dumps(verdict)
            or len(verdict.get("output", "")) > 2000
        ):
            wrong.append((name, reward, verdict))
    assert wrong == []
    # nothing survived, nothing outside was touched, the judge and its port are fine
    after = {p.pid for p in psutil.Process().children(recursive=True)}
    assert after <= before, "a process outlived the judge"
    assert (host["dir"] / "canary.txt").read_text() == "intact"
    assert sorted(p.name for p in host["dir"].iterdir()) == [".env", "canary.txt", "store"]
    assert not Path("/tmp/rlctl-hostile").exists()
    assert host["accepted"] == []
    assert psutil.Process().is_running()


def test_a_correct_program_still_passes_beside_them(host: dict) -> None:
    """The control: the suite's task is solvable, so reward 0 above means contained."""
    judge = CodeJudge(workers=1, timeout=2.0)
    try:
        ((reward, verdict),) = judge.score([{"completion": WIN, "reference": REFERENCE}])
    finally:
        judge.close()
    assert reward == 1.0 and verdict["tests"] == 3, verdict


@pytest.mark.skipif(os.geteuid() != 0, reason="per-worker uids are given only as root")
def test_two_sandboxes_on_one_machine_never_share_a_uid() -> None:
    """Two judges at once (two `rlctl judge --judge code`, a judge beside `train grpo --reward
    code`, two test workers) must not run programs as the same uid: without a cgroup, the
    clean-up after each program kills every process of its uid, the other judge's included."""
    first, second = Sandbox(workers=2), Sandbox(workers=2)
    try:
        uids = [slot.cfg["uid"] for box in (first, second) for slot in box._slots]
        assert len(set(uids)) == 4, uids
        assert all(SANDBOX_UID_BASE <= u < SANDBOX_UID_BASE + 64 for u in uids)
    finally:
        first.close()
    third = Sandbox(workers=2)  # the first one's uids are free again
    try:
        reused = {slot.cfg["uid"] for slot in third._slots}
        assert reused == set(uids[:2])
    finally:
        second.close()
        third.close()
