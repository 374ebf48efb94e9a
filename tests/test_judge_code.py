"""`code`: MBPP references pass; hostile programs get 0 with a reason and harm nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import orjson
import psutil
import pytest

from rlctl.backends.judges import sandbox as sandbox_mod
from rlctl.backends.judges.code import CodeJudge, extract_code
from rlctl.backends.judges.sandbox import SANDBOX_UID_BASE, Sandbox
from rlctl.data import SAMPLES
from tests.conftest import Runner, jsonl

HOSTILE = {
    "infinite loop": ("while True:\n    pass", "timeout after 2 s"),
    "fork bomb": ("import os\nwhile True:\n    os.fork()", "starting processes is not allowed"),
    "10 GB allocation": ("x = bytearray(10 * 1024**3)", "MemoryError"),
    "write outside its dir": (
        "open('{canary_dir}/pwned.txt', 'w').write('x')",
        "write outside its directory",
    ),
    "delete files": ("import os\nos.remove('{canary}')", "outside its directory"),
    "kill its parent": (
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
        "sending signals is not allowed",
    ),
    "read env secrets": (
        "import os\nassert 'sk-' in str(os.environ), 'no secret here'",
        "no secret here",
    ),
    "open a socket": (
        "import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=1)",
        "network is disabled",
    ),
    "ctypes escape": ("import ctypes\nctypes.CDLL(None).fork()", "ctypes is not allowed"),
    "subprocess": (
        "import subprocess\nsubprocess.run(['rm', '-rf', '{canary_dir}'])",
        "starting processes is not allowed",
    ),
    "exit before the tests": ("import os\nos._exit(0)", "before the tests finished"),
    "forged report": (
        "open('report.jsonl', 'a').write('x {{\"stage\": \"done\", \"tests\": 1}}\\n')\nimport os\nos._exit(0)",
        "before the tests finished",
    ),
}


def test_extract_code_forms() -> None:
    assert extract_code("Here:\n```python\ndef f():\n    return 1\n```\nDone") == (
        "def f():\n    return 1\n",
        "fence",
    )
    assert extract_code("[BEGIN]\ndef f(): return 1\n[DONE]")[1] == "begin-done"
    two = "```python\nprint('demo')\n```\n```python\ndef g():\n    pass\n```\n```\nout\n```"
    assert extract_code(two)[0] == "def g():\n    pass\n"
    assert extract_code("def f(): return 1") == ("def f(): return 1", "raw")


def test_bundled_mbpp_reference_solutions_pass_their_tests(rlctl: Runner, tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (SAMPLES / "mbpp-test.jsonl").read_text().splitlines()]
    prompts = {r["id"]: r for r in jsonl(rlctl("data", "pull", "mbpp", "--sample").stdout)}
    rollouts = [
        {
            **prompts[f"mbpp/{row['task_id']}"],
            "completion": f"```python\n{row['code']}\n```",
            "sample": 0,
        }
        for row in rows
    ]
    (tmp_path / "r.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rollouts))
    r = rlctl("judge", "-i", "r.jsonl", "--judge", "code", "--workers", "2")
    assert r.returncode == 0, r.stderr
    judged = jsonl(r.stdout)
    assert len(judged) == 50
    assert [j["verdict"]["reason"] for j in judged if j["reward"] != 1.0] == []
    assert all(j["verdict"]["tests"] == 3 for j in judged if j["id"] != "mbpp/16")


def test_a_wrong_solution_names_the_failing_test() -> None:
    judge = CodeJudge(workers=1)
    try:
        ((reward, verdict),) = judge.score(
            [
                {
                    "completion": "def f(x):\n    return x",
                    "reference": "assert f(1) == 1\nassert f(2) == 3\nassert f(3) == 3",
                }
            ]
        )
    finally:
        judge.close()
    assert (
        reward == 0.0
        and verdict["failed_test"] == 1
        and verdict["reason"].startswith("test 1 failed")
    )


def test_bad_references_give_none() -> None:
    judge = CodeJudge(workers=1)
    try:
        scores = judge.score(
            [{"completion": "x = 1", "reference": "assert ("}, {"completion": "x = 1"}]
        )
    finally:
        judge.close()
    assert [s[0] for s in scores] == [None, None]


def test_hostile_programs_get_zero_and_harm_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary_dir = tmp_path / "outside"
    canary_dir.mkdir()
    canary = canary_dir / "keep.txt"
    canary.write_text("intact")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-0123456789abcdef")
    names = list(HOSTILE)
    records = [
        {
            "completion": HOSTILE[n][0].format(canary=canary, canary_dir=canary_dir),
            "reference": "assert True",
        }
        for n in names
    ]
    judge = CodeJudge(workers=4, timeout=2.0)
    try:
        scores = judge.score(records)
    finally:
        judge.close()
    for name, (reward, verdict) in zip(names, scores, strict=True):
        assert reward == 0.0, (name, verdict)
        assert HOSTILE[name][1] in verdict["reason"], (name, verdict["reason"])
        assert "sk-test-secret" not in json.dumps(verdict), name
    assert canary.read_text() == "intact" and [p.name for p in canary_dir.iterdir()] == ["keep.txt"]
    assert psutil.Process().is_running()  # the judge survived
    if os.geteuid() == 0:
        leftovers = [
            p
            for p in psutil.process_iter(["uids"])
            if p.info["uids"] and SANDBOX_UID_BASE <= p.info["uids"].real < SANDBOX_UID_BASE + 64
        ]
        assert leftovers == []


BARE_HARNESS = """
import json, os, socket, sys
nonce = sys.stdin.readline().strip()
out = {}
def attempt(name, fn):
    try:
        fn()
        out[name] = "done"
    except BaseException as e:
        out[name] = type(e).__name__ + ": " + str(e)
attempt("write_tmp", lambda: open("/tmp/rlctl-bare-pwned", "w").write("x"))
attempt("write_canary", lambda: open(CANARY, "w").write("x"))
attempt("socket", lambda: socket.create_connection(("127.0.0.1", 22), timeout=1))
attempt("kill_parent", lambda: os.kill(os.getppid(), 9))
def bomb():
    pids = []
    for _ in range(1000):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        pids.append(pid)
attempt("fork_1000", bomb)
out["env"] = sorted(os.environ)
out["uid"] = os.getuid()
with open("report.jsonl", "a") as f:
    f.write(nonce + " " + json.dumps({"stage": "bare", **out}) + "\\n")
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="the OS layer (namespaces, uid drop) needs root")
def test_the_os_layer_holds_without_the_audit_hook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: a harness with no hook attacks directly; namespaces, the uid drop
    and rlimits still stop it."""
    canary = tmp_path / "canary.txt"
    canary.write_text("intact")
    bare = tmp_path / "bare_harness.py"
    bare.write_text(BARE_HARNESS.replace("CANARY", repr(str(canary))))
    monkeypatch.setattr(sandbox_mod, "HARNESS", bare)
    box = Sandbox(workers=1, timeout=10)
    captured: dict = {}
    original = sandbox_mod._read_reports

    def keep(path: Path, nonce: str) -> list:
        captured["events"] = original(path, nonce)
        return captured["events"]

    monkeypatch.setattr(sandbox_mod, "_read_reports", keep)
    try:
        box.run("", [])
    finally:
        box.close()
    (event,) = captured["events"]
    assert "Read-only file system" in event["write_tmp"], event
    # the uid drop or the read-only mount, whichever the path meets first
    assert any(e in event["write_canary"] for e in ("Read-only file system", "Permission denied"))
    assert "Network is unreachable" in event["socket"], event
    assert "Operation not permitted" in event["kill_parent"], event
    assert "Resource temporarily unavailable" in event["fork_1000"], event
    assert event["uid"] >= SANDBOX_UID_BASE
    assert "OPENAI_API_KEY" not in event["env"]
    assert canary.read_text() == "intact" and not Path("/tmp/rlctl-bare-pwned").exists()
