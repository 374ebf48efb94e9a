"""`code`: MBPP references pass, tests see the program's values as plain data (hostile
programs: test_judge_code_hostile.py)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import orjson

from rlctl.backends.judges.code import CodeJudge, extract_code
from rlctl.backends.judges.sandbox import Sandbox
from rlctl.data import SAMPLES
from rlctl.stages.sources.mbpp import convert, keep
from tests.conftest import Runner, jsonl, shared


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


def _judge(records: list[dict], timeout: float = 5.0) -> list:
    judge = CodeJudge(workers=2, timeout=timeout)
    try:
        return judge.score(records)
    finally:
        judge.close()


def test_every_mbpp_test_split_gold_program_passes() -> None:
    """All 500 reference solutions of MBPP's test split (task ids 11-510), as an unsandboxed
    `python -c` passes them: objects built by the tests' setup code (MBPP 367's trees), a
    Counter compared with a dict (40, 88), a task function named `sum` (126)."""
    path = shared("mbpp/mbpp.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows = [r for r in rows if keep(r, "test")]
    records = [
        {**convert(r, i, "test", f"{path}:{i}"), "completion": r["code"]}
        for i, r in enumerate(rows)
    ]
    # a generous deadline: mbpp/123 (amicable numbers below 10,000) takes seconds on a loaded
    # 2-core machine, and this test is about verdicts, not speed (bench/code_judge.py is)
    scores = _judge(records, timeout=60.0)
    failed = [(r["id"], v["reason"]) for r, (s, v) in zip(records, scores, strict=True) if s != 1]
    assert len(records) == 500 and failed == []


def test_values_cross_as_plain_data() -> None:
    cases = {
        "from collections import Counter\ndef f(x):\n    return Counter(x)": (
            "assert f('aab') == {'a': 2, 'b': 1}",
            1.0,
        ),
        "def f(x):\n    return (i * 2 for i in range(x))": ("assert list(f(3)) == [0, 2, 4]", 1.0),
        "def f():\n    return {(1, 2): {3}, 'k': [b'x', 1.5, None, 2**80, float('inf')]}": (
            "assert f() == {(1, 2): {3}, 'k': [b'x', 1.5, None, 2**80, float('inf')]}",
            1.0,
        ),
        "def f(x):\n    raise ValueError('no')": (
            "try:\n    f(1)\nexcept ValueError as e:\n    assert str(e) == 'no'\nelse:\n"
            "    assert False",
            1.0,
        ),
        "class P:\n    def __init__(self, v):\n        self.v = v\n"
        "def total(ps):\n    return sum(p.v for p in ps)": (
            "a = P(2)\nb = P(3)\na.v = 4\nassert total([a, b]) == 7 and a.v == 4",
            1.0,
        ),
        "class P:\n    pass\ndef f():\n    return P()": ("assert f() != 1", 0.0),
        "def sum(a, b):\n    return a + b": ("assert sum(2, 3) == 5", 1.0),
        "def len(x):\n    return 3\ndef f(x):\n    return [x]": ("assert len(f(1)) == 3", 0.0),
        "def f(x):\n    return lambda y: x + y": ("assert f(1)(2) == 3", 1.0),
    }
    records = [{"completion": c, "reference": t} for c, (t, _) in cases.items()]
    scores = _judge(records)
    got = [s for s, _ in scores]
    assert got == [want for _, want in cases.values()], list(zip(got, scores, strict=True))
    assert "redefines len" in scores[7][1]["reason"]
    assert "not plain data" in scores[5][1]["reason"]


def test_output_is_bounded_and_masked() -> None:
    key = "sk-proj-" + "a1b2c3d4" * 4
    ((reward, verdict),) = _judge(
        [{"completion": f"print('x' * 100000)\nprint('{key}')", "reference": "assert False"}]
    )
    assert reward == 0.0 and len(verdict["output"]) <= 2000
    assert key not in verdict["output"] and verdict["output"].endswith("***")


def test_a_dead_fork_server_is_replaced() -> None:
    """A server killed between programs (OOM killer, a stray kill) costs one restart, not
    the judge run, and its worker's cgroup keeps working."""
    box = Sandbox(workers=1, timeout=5.0)
    try:
        assert box.run("def f():\n    return 1", ["assert f() == 1"]).passed
        (slot,) = box._slots
        os.killpg(slot.proc.pid, signal.SIGKILL)
        slot.proc.wait()
        again = box.run("def f():\n    return 2", ["assert f() == 2"])
        assert again.passed, again.reason
    finally:
        box.close()
