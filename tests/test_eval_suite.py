"""The RLVR lab's offline eval suite (gsm8k, hendrycks_math, ifeval, mbpp, humaneval) on rlctl's
bundled samples, scored by lm-eval's own task code.

Scores are checked where the answers are known: a scripted "model" behind lm-eval's API backend
(tests/chat_server.py) answers each prompt with the dataset's own reference solution, or a wrong
one, chosen per document. Per sample, rlctl's numbers must equal the reference implementation's
on the same outputs: Hugging Face's `code_eval` (tests/fixtures/hf_code_eval, what lm-eval loads
from the hub) for the sandboxed code tasks, lm-eval's IFEval scores for `--judge ifeval`.
"""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

import orjson
import pytest

from rlctl.data import SAMPLES
from tests.chat_server import ChatServer
from tests.conftest import FIXTURES, ROOT, Runner, jsonl


def _rows(name: str) -> list[dict]:
    data = (SAMPLES / name).read_bytes()
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    return [orjson.loads(x) for x in data.splitlines() if x.strip()]


def _served(rlctl: Runner, server: ChatServer, *args: str, timeout: float = 300) -> list[dict]:
    """`rlctl eval ARGS` through lm-eval's completions backend against the scripted server;
    the per-sample records it streams."""
    r = rlctl(
        "eval", *args, "--backend", "openai", "--base-url", server.url, "--model", "oracle",
        timeout=timeout,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    return jsonl(r.stdout)


def _metric(sample: dict, metric: str) -> float:
    (flt,) = [f for f in sample["meta"]["lm_eval"] if metric in sample["meta"]["lm_eval"][f]]
    return float(sample["meta"]["lm_eval"][flt][metric])


# ---- code tasks: lm-eval's mbpp / humaneval, programs run in rlctl's sandbox ----------------

HUMANEVAL = _rows("humaneval-test.jsonl.gz")
MBPP = _rows("mbpp-test.jsonl")


def _code_oracle(prompt: str) -> str:
    """The reference solution for even task ids, a wrong one for odd ids."""
    for doc in HUMANEVAL:
        if prompt.endswith(doc["prompt"]):
            n = int(doc["task_id"].split("/")[1])
            return doc["canonical_solution"] if n % 2 == 0 else "    return None\n"
    text = prompt.rsplit("here is your task: ", 1)[1]
    for doc in MBPP:
        if text.startswith(doc["text"]):
            return doc["code"] if doc["task_id"] % 2 == 0 else "def nothing():\n    pass\n"
    raise AssertionError(f"unknown prompt {prompt[-200:]!r}")


def _hf_code_eval(predictions: list[str], references: list[str]) -> list[bool]:
    """Hugging Face's own code_eval, unsandboxed (dataset reference solutions only)."""
    import evaluate

    os.environ["HF_ALLOW_CODE_EVAL"] = "1"
    metric = evaluate.load(str(FIXTURES / "hf_code_eval" / "code_eval.py"))
    _, results = metric.compute(
        references=references, predictions=[[p] for p in predictions], k=[1]
    )
    return [results[i][0][1]["passed"] for i in range(len(predictions))]


@pytest.mark.parametrize(
    ("task", "metric", "n"), [("humaneval", "pass@1", 12), ("mbpp", "pass_at_1", 10)]
)
def test_code_tasks_score_in_the_sandbox_equal_to_hf_code_eval(
    rlctl: Runner, sql, task: str, metric: str, n: int
) -> None:
    # the old code stopped here: lm-eval's task module loads `code_eval` from the hub
    with ChatServer(complete=_code_oracle) as server:
        samples = _served(
            rlctl, server, task, "--data", "sample", "--limit", str(n), "--allow-code-eval"
        )
    assert len(samples) == n
    rlctl_pass = [_metric(s, metric) for s in samples]
    # the reference solutions pass, the wrong ones fail: real execution, not a constant
    expected = [
        float((int(s["meta"]["doc_id"]) if task == "humaneval" else MBPP[i]["task_id"]) % 2 == 0)
        for i, s in enumerate(samples)
    ]
    assert rlctl_pass == expected
    # per sample, equal to Hugging Face's code_eval on the same program and tests
    flt = next(iter(samples[0]["meta"]["lm_eval"]))
    programs = []
    for s in samples:
        extracted = s["meta"]["lm_eval"][flt]["extracted"]
        while isinstance(extracted, list):
            extracted = extracted[0]
        programs.append(extracted)
    assert [float(x) for x in _hf_code_eval(programs, [s["reference"] for s in samples])] == (
        rlctl_pass
    )
    (row,) = sql(f"SELECT value, samples, data FROM evals WHERE task = '{task}'")
    assert row["value"] == pytest.approx(sum(expected) / n) and row["samples"] == n
    assert "samples/" in row["data"] and "sha256" in row["data"]


def test_code_tasks_need_the_flag_and_predict_only_works_offline(rlctl: Runner) -> None:
    r = rlctl("eval", "mbpp", "--model", "x", "--backend", "openai", "--base-url", "http://h/v1")
    assert r.returncode == 2 and b"--allow-code-eval" in r.stderr
    with ChatServer(complete=_code_oracle) as server:
        samples = _served(
            rlctl, server, "mbpp", "--data", "sample", "--limit", "2", "--predict-only"
        )
    assert len(samples) == 2
    assert [s["completion"] for s in samples] == [_code_oracle(s["prompt"]) for s in samples]


# ---- IFEval: lm-eval's task offline, and `--judge ifeval` with lm-eval's checkers ----------

REPLIES = [
    "this reply is all lowercase and has no commas at all",
    '"A QUOTED REPLY, IN CAPITALS. P.S. SNEAKER SNEAKER"',
    "Sure, here it is:\n*first highlight* and *second highlight*\nthe end",
    "<<a title>>\n\nthe first answer\n******\nthe second answer",
]


def _ifeval_oracle(prompt: str) -> str:
    return REPLIES[len(prompt) % len(REPLIES)]


def test_ifeval_offline_and_the_judge_equal_lm_eval_per_sample(
    rlctl: Runner, sql, tmp_path: Path
) -> None:
    with ChatServer(complete=_ifeval_oracle) as server:
        samples = _served(rlctl, server, "ifeval", "--data", "sample")
    assert len(samples) == 32  # the whole bundled sample, nothing dropped
    out = tmp_path / "s.jsonl"
    out.write_bytes(b"".join(orjson.dumps(s) + b"\n" for s in samples))
    judged = {}
    for mode in ("strict", "loose"):
        r = rlctl("judge", "--judge", "ifeval", "--ifeval-mode", mode, "-i", str(out))
        assert r.returncode == 0, r.stderr.decode()
        judged[mode] = jsonl(r.stdout)
    # Prompt 1122 asks for four '#'; upstream's letter checker takes only a-z and so checks a
    # random letter on every call: lm-eval's own score for it is random. The judge flags it
    # (and checks it under a fixed seed); every other prompt must match lm-eval exactly.
    flagged = {r["meta"]["doc_id"] for r in judged["strict"] if "random_args" in r["verdict"]}
    keys = [
        orjson.loads(x)["key"] for x in (SAMPLES / "ifeval-sample.jsonl").read_bytes().splitlines()
    ]
    assert {keys[i] for i in flagged} == {1122}
    for mode, records in judged.items():
        for rec, sample in zip(records, samples, strict=True):
            if rec["meta"]["doc_id"] in flagged:
                continue
            lm = sample["meta"]["lm_eval"]["none"]
            assert rec["reward"] == float(lm[f"prompt_level_{mode}_acc"])
            assert rec["verdict"][mode] == lm[f"inst_level_{mode}_acc"]
    strict = [r["reward"] for r in judged["strict"]]
    loose = [r["reward"] for r in judged["loose"]]
    assert 0 < sum(strict) < len(strict) and strict != loose  # both outcomes, both modes differ
    # the judge's run metrics are lm-eval's four aggregate scores on the same completions
    scores = {r["metric"]: r["value"] for r in sql("SELECT metric, value FROM evals")}
    judge_runs = sql("SELECT run_id FROM runs WHERE command = 'judge' ORDER BY started_at")
    metrics = {
        r["name"].split("/", 1)[1]: r["value"]
        for r in sql(
            f"SELECT name, value FROM metrics WHERE run_id = '{judge_runs[0]['run_id']}' "
            "AND name LIKE 'ifeval/%level%'"
        )
    }
    # aggregates over the same completions: equal up to the one random-argument prompt
    assert metrics == pytest.approx(scores, abs=1 / 32)


def test_ifeval_reward_reads_pulled_prompt_records(rlctl: Runner, tmp_path: Path) -> None:
    """`data pull ifeval` carries the instructions in `reference`, so the same judge is a GRPO
    reward (`--reward ifeval`); a record without them is a null reward, counted."""
    pulled = jsonl(rlctl("data", "pull", "ifeval", "--sample").stdout)
    assert len(pulled) == 32 and pulled[1]["id"] == "ifeval/1001"
    rollouts = [{**p, "completion": "no commas here", "sample": 0} for p in pulled[1:3]] + [
        {"id": "x", "prompt": "hi", "completion": "hello", "sample": 0}
    ]
    data = tmp_path / "r.jsonl"
    data.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rollouts))
    r = rlctl("judge", "--judge", "ifeval", "-i", str(data))
    assert r.returncode == 0, r.stderr.decode()
    rewards = [x["reward"] for x in jsonl(r.stdout)]
    # 1001 asks for no commas (followed); 1005 for 12 placeholders (not); x has no instructions
    assert rewards == [1.0, 0.0, None]
    assert b"no reference" in r.stderr


def test_the_ifeval_judge_does_not_import_torch(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from rlctl.backends.judges import build\n"
        "j = build('ifeval', {})\n"
        "print(j.score([{'completion': 'a b', 'reference': "
        '\'{"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}\'}])[0][0])\n'
        "print('torch' in sys.modules)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NLTK_DATA": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=120)
    assert out.stdout.decode().split() == ["1.0", "False"], out.stderr.decode()


# ---- hendrycks_math: a group, each subject fed its own documents from one file -------------

MATH = _rows("math-test-sample.jsonl")


def _boxed(solution: str) -> str:
    from lm_eval.tasks.hendrycks_math.utils import last_boxed_only_string, remove_boxed

    return remove_boxed(last_boxed_only_string(solution))


def _math_oracle(prompt: str) -> str:
    """Right for every problem but the number-theory ones."""
    problem = prompt.rsplit("Problem: ", 1)[1].rsplit("\nAnswer:", 1)[0]
    doc = next(d for d in MATH if d["problem"] == problem)
    return " $42424242$" if doc["type"] == "Number Theory" else f" ${_boxed(doc['solution'])}$"


def test_hendrycks_math_group_runs_offline_per_subject(rlctl: Runner, sql, tmp_path: Path) -> None:
    with ChatServer(complete=_math_oracle) as server:
        samples = _served(rlctl, server, "hendrycks_math", "--data", "sample", "--shots", "0")
        assert len(samples) == len(MATH)
        rows = {r["task"]: r for r in sql("SELECT task, value, samples, data FROM evals")}
        # the group's score is lm-eval's size-weighted mean over its subjects
        nt = sum(d["type"] == "Number Theory" for d in MATH)
        assert rows["hendrycks_math"]["value"] == pytest.approx(1 - nt / len(MATH))
        assert rows["hendrycks_math_num_theory"]["value"] == 0.0
        assert rows["hendrycks_math_algebra"]["value"] == 1.0
        # the sample has no counting & probability problem: said, not silently averaged away
        assert "hendrycks_math_counting_and_prob" not in rows
        assert "no documents for hendrycks_math_counting_and_prob" in rows["hendrycks_math"]["data"]

        # 4 shots: each subject draws its examples from its own subject in the few-shot data
        pool = tmp_path / "train.jsonl"
        pool.write_bytes(
            b"".join(
                orjson.dumps({**d, "type": t}) + b"\n"
                for t in {d["type"] for d in MATH}
                for d in MATH
            )
        )
        four = _served(
            rlctl, server, "hendrycks_math", "--data", "sample", "--shots", "4",
            "--fewshot-data", str(pool),
        )  # fmt: skip
        assert four[0]["prompt"].count("Problem:") == 5
        # and from the few test documents of one subject there are not 4 to draw
        r = rlctl(
            "eval", "hendrycks_math", "--data", "sample", "--shots", "4", "--fewshot-data",
            "test", "--backend", "openai", "--base-url", server.url, "--model", "oracle",
        )  # fmt: skip
    assert r.returncode == 2
    assert "4 shots need at least 4 examples" in r.stderr.decode().splitlines()[-1]


# ---- the suite: one command, one run, on a tiny model ---------------------------------------


def test_the_rlvr_suite_runs_offline_on_a_tiny_model(
    rlctl: Runner, sql, tiny_model: Path, tmp_path: Path
) -> None:
    from rlctl.stages.eval_suite import load_suite

    name, entries = load_suite(ROOT / "configs/eval/rlvr.yaml")
    assert name == "rlvr" and [(e["task"], e.get("shots")) for e in entries] == [
        ("gsm8k", 0), ("gsm8k", 4), ("gsm8k", 8), ("hendrycks_math", 4), ("ifeval", None),
        ("mbpp", 3), ("humaneval", None),
    ]  # fmt: skip
    # the lab's file, with MATH's few-shot pool given (rlctl bundles no MATH train split)
    pool = tmp_path / "math-train.jsonl"
    pool.write_bytes(
        b"".join(
            orjson.dumps({**d, "type": t}) + b"\n" for t in {d["type"] for d in MATH} for d in MATH
        )
    )
    suite = tmp_path / "rlvr.yaml"
    suite.write_text(
        (ROOT / "configs/eval/rlvr.yaml")
        .read_text()
        .replace(
            "{task: hendrycks_math, shots: 4}",
            f"{{task: hendrycks_math, shots: 4, fewshot_data: {pool}}}",
        )
    )
    r = rlctl(
        "eval", "suite", str(suite), "--model", str(tiny_model), "--data", "sample",
        "--limit", "2", "--gen-kwargs", "max_gen_toks=8", "--allow-code-eval",
        timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    run_id = jsonl(r.stdout)[0]["run_id"]
    got = {
        (x["task"], x["shots"]): x
        for x in sql(
            'SELECT task, shots, samples, data, "limit" FROM evals '
            "WHERE metric NOT LIKE '%stderr%'"
        )
    }
    for key in [("gsm8k", 0), ("gsm8k", 4), ("gsm8k", 8), ("hendrycks_math", 4), ("ifeval", 0),
                ("mbpp", 3), ("humaneval", 0)]:  # fmt: skip
        assert key in got, sorted(got)
        assert got[key]["limit"] == 2
    # gsm8k's few-shot examples come from its whole train split, which rlctl bundles
    assert "few-shot: file:" in got[("gsm8k", 8)]["data"]
    assert "gsm8k-train.jsonl.gz" in got[("gsm8k", 8)]["data"]
    assert "gsm8k-test.jsonl" in got[("gsm8k", 0)]["data"]
    # one run, and `eval compare` holds it against the published baseline
    runs = sql("SELECT run_id, config FROM runs WHERE command = 'eval'")
    assert [x["run_id"] for x in runs] == [run_id]
    config = runs[0]["config"]
    suite_conf = (orjson.loads(config) if isinstance(config, str) else config)["suite"]
    assert suite_conf["name"] == "rlvr" and len(suite_conf["tasks"]) == 7
    cmp = rlctl(
        "eval", "compare", run_id, "--baseline", str(ROOT / "configs/baselines/qwen3-1.7b-base.yaml"),
        "--json",
    )  # fmt: skip
    assert cmp.returncode == 0, cmp.stderr.decode()
    rows = jsonl(cmp.stdout)
    assert {(x["task"], x["shots"]) for x in rows} >= {("gsm8k", 8), ("ifeval", 0)}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tasks: [{task: gsm8k, shot: 3}]", "tasks[0]: unknown key 'shot'; did you mean 'shots'?"),
        ("tasks: []", "non-empty 'tasks' list"),
        ("tasks: [{task: gsm8k, shots: -1}]", "tasks[0]: shots must be a whole number"),
        ("tasks: [gsm8k, {task: nosuchtask}]", "tasks[1] (nosuchtask): eval: lm-eval has no task"),
    ],
)
def test_a_bad_suite_file_is_one_line(
    rlctl: Runner, tiny_model: Path, tmp_path: Path, text: str, message: str
) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(text)
    r = rlctl("eval", "suite", str(suite), "--model", str(tiny_model), "--data", "sample")
    lines = r.stderr.decode().strip().splitlines()
    assert r.returncode == 2 and message in lines[-1], lines
    assert not re.search("Traceback", r.stderr.decode())
