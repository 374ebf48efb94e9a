"""`rlctl judge` end to end: real processes and pipes, records in the store."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from rlctl.backends.judges import reward_function
from tests.conftest import Runner, jsonl, shared


def gold_rollouts(path: Path, shift: int = 0) -> list[dict]:
    """GSM8K rows as rollouts whose completion is the gold solution; `shift` pairs each with
    the reference of another row."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    refs = [r["answer"].split("####")[-1].strip() for r in rows]
    return [
        {
            "id": f"gsm8k/test/{i}",
            "messages": [{"role": "user", "content": r["question"]}],
            "completion": r["answer"],
            "reference": refs[(i + shift) % len(rows)],
            "sample": 0,
        }
        for i, r in enumerate(rows)
    ]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def test_all_gold_gsm8k_solutions_score_1_and_shifted_references_0(
    rlctl: Runner, sql, tmp_path: Path
) -> None:
    src = shared("gsm8k/test.jsonl")
    gold = write_jsonl(tmp_path / "gold.jsonl", gold_rollouts(src))
    r = rlctl("judge", "-i", str(gold), "--judge", "math", "--mode", "strict")
    assert r.returncode == 0, r.stderr
    judged = jsonl(r.stdout)
    assert len(judged) == 1319 and all(j["reward"] == 1.0 for j in judged)
    assert all(j["verdict"]["mode"] == "strict" for j in judged)
    shifted_records = gold_rollouts(src, shift=1)
    gold_records = gold_rollouts(src)  # once: read inside the loop it made this test O(n²)
    same = {
        i
        for i, (g, s) in enumerate(zip(gold_records, shifted_records, strict=True))
        if g["reference"] == s["reference"]
    }
    shifted = write_jsonl(tmp_path / "shifted.jsonl", shifted_records)
    judged = jsonl(rlctl("judge", "-i", str(shifted), "--judge", "math", "--mode", "strict").stdout)
    assert sum(j["reward"] for j in judged) == len(
        same
    )  # only rows whose neighbour has the same answer
    assert all(j["reward"] == 0.0 for i, j in enumerate(judged) if i not in same)
    (row,) = sql(
        "SELECT count(*) AS n, avg(reward) AS mean FROM judged WHERE run_id IN (SELECT run_id FROM runs WHERE command = 'judge' ORDER BY started_at LIMIT 1)"
    )
    assert row == {"n": 1319, "mean": 1.0}


def test_sample_pipe_with_lineage_and_weights(rlctl: Runner, sql, tmp_path: Path) -> None:
    rollouts = [
        {
            "id": "a",
            "prompt": "p",
            "completion": "<think>x</think><answer>18</answer>",
            "reference": "18",
            "sample": 0,
        },
        {"id": "a", "prompt": "p", "completion": "It is 17", "reference": "18", "sample": 1},
    ]
    write_jsonl(tmp_path / "r.jsonl", rollouts)
    r = rlctl(shell="cat r.jsonl | $RLCTL judge --judge math=1.0 --judge format=0.1")
    assert r.returncode == 0, r.stderr
    a, b = jsonl(r.stdout)
    assert a["reward"] == pytest.approx(1.1) and b["reward"] == 0.0
    assert a["judge"] == "math=1+format=0.1"
    assert a["verdict"]["math"]["extracted"] == "18" and a["verdict"]["format"]["matched"]
    assert (
        sql("SELECT judge, reward FROM judged ORDER BY reward DESC")[0]["judge"]
        == "math=1+format=0.1"
    )


def test_pairs_best_vs_worst_skipping_ties(rlctl: Runner, sql, tmp_path: Path) -> None:
    recs = []
    for pid, answers in {"p1": ["18", "17", "16"], "p2": ["5", "5"], "p3": ["1"]}.items():
        ref = {"p1": "18", "p2": "5", "p3": "1"}[pid]
        for k, ans in enumerate(answers):
            recs.append(
                {
                    "id": pid,
                    "messages": [{"role": "user", "content": pid}],
                    "completion": f"#### {ans}",
                    "reference": ref,
                    "sample": k,
                }
            )
    write_jsonl(tmp_path / "r.jsonl", recs)
    r = rlctl("judge", "-i", "r.jsonl", "--judge", "math", "--pairs")
    assert r.returncode == 0, r.stderr
    (pair,) = jsonl(r.stdout)
    assert (pair["id"], pair["chosen"], pair["rejected"], pair["margin"]) == (
        "p1",
        "#### 18",
        "#### 17",
        1.0,
    )
    assert pair["meta"]["samples"] == 3 and pair["messages"][0]["content"] == "p1"
    assert b"1 pairs from 6 judged records (2 prompts tied)" in r.stderr
    kinds = {row["kind"]: row["records"] for row in sql("SELECT kind, records FROM artifacts")}
    assert kinds == {"judged": 6, "pair": 1}
    v = rlctl("data", "validate", "-i", "latest:pairs", "--kind", "pair")
    assert v.returncode == 0, v.stderr


def test_trl_reward_function_shape() -> None:
    fn = reward_function("math")
    assert fn.__name__ == "rlctl_math"
    completions = ["#### 3", [{"role": "assistant", "content": "<answer>4</answer>"}], "none"]
    assert fn(completions, prompts=["a", "b", "c"], reference=["3", "4", "5"]) == [1.0, 1.0, 0.0]
    weighted = reward_function("format=0.5")
    assert weighted(["<think>a</think><answer>1</answer>", "x"]) == [0.5, 0.0]
    assert reward_function("math")(["#### 1"], reference=[None]) == [None]


def test_an_importable_function_is_a_judge(rlctl: Runner, tmp_path: Path) -> None:
    (tmp_path / "myreward.py").write_text(
        "def length(completions, **kw):\n    return [float(len(c)) for c in completions]\n"
    )
    write_jsonl(tmp_path / "r.jsonl", [{"id": "a", "prompt": "p", "completion": "abcd"}])
    r = rlctl(
        "judge",
        "-i",
        "r.jsonl",
        "--judge",
        "myreward:length",
        extra_env={"PYTHONPATH": str(tmp_path)},
    )
    assert r.returncode == 0, r.stderr
    assert jsonl(r.stdout)[0]["reward"] == 4.0


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (["--judge", "mth"], "did you mean 'math'"),
        (["--judge", "math=x"], "not a number"),
        (["--judge", "rm"], "--rm-model"),
        (["--judge", "nope.module:fn"], "cannot import"),
        (["--judge", "format", "--format-regex", "("], "not a valid regex"),
    ],
)
def test_bad_judge_options_exit_2(rlctl: Runner, tmp_path: Path, args: list[str], msg: str) -> None:
    write_jsonl(tmp_path / "r.jsonl", [{"id": "a", "prompt": "p", "completion": "c"}])
    r = rlctl("judge", "-i", "r.jsonl", *args)
    assert r.returncode == 2 and msg in r.stderr.decode(), r.stderr
    assert len(r.stderr.decode().strip().splitlines()) == 1


def test_judge_refuses_prompt_records(rlctl: Runner) -> None:
    r = rlctl(shell="$RLCTL data pull gsm8k --sample --limit 2 | $RLCTL judge --judge math")
    assert r.returncode == 2
    assert "<stdin>:1: field 'completion': missing" in r.stderr.decode()


MIXED = [
    {
        "id": "gsm8k/1",
        "source": "gsm8k",
        "prompt": "Tom has 3 apples and buys 4. How many?",
        "completion": "3 + 4 = 7\n#### 7",
        "reference": "7",
        "sample": 0,
    },
    {
        "id": "mbpp/1",
        "source": "mbpp",
        "prompt": "Write add(a, b).",
        "completion": "```python\ndef add(a, b):\n    return a + b  # 1\n```",
        "reference": "assert add(1, 2) == 3",
        "sample": 0,
    },
    {
        "id": "other/1",
        "source": "other",
        "prompt": "Say hi.",
        "completion": "hi",
        "reference": "hi",
        "sample": 0,
    },
]


def test_routed_judges_score_only_their_sources(rlctl: Runner, tmp_path: Path, store: Path) -> None:
    """Unrouted, math read "1" out of the MBPP program and code ran the GSM8K answer as
    Python; routed, each record gets the judge it is for, and the run says which scored what."""
    (tmp_path / "r.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in MIXED))
    r = rlctl("judge", "-i", "r.jsonl", "--judge", "gsm8k:math", "--judge", "mbpp:code")
    assert r.returncode == 0, r.stderr.decode()
    judged = jsonl(r.stdout)
    assert [j["reward"] for j in judged] == [1.0, 1.0, None]
    assert list(judged[0]["verdict"]) == ["gsm8k:math"]
    assert list(judged[1]["verdict"]) == ["mbpp:code"]
    assert judged[2]["verdict"] == {"reason": "no judge for source 'other'"}
    assert "no judge for some records, left null: other (1)" in r.stderr.decode()
    run = orjson.loads((store / "runs" / judged[0]["run_id"] / "run.json").read_bytes())
    assert run["judges"]["routes"] == {
        "by": "source",
        "judges": {"gsm8k:math": "gsm8k", "mbpp:code": "mbpp"},
    }
    lines = (store / "runs" / judged[0]["run_id"] / "metrics.jsonl").read_text().splitlines()
    metrics = {m["name"]: m["value"] for m in map(orjson.loads, lines)}
    assert metrics["scored/gsm8k:math"] == 1 and metrics["scored/mbpp:code"] == 1
    assert metrics["unrouted"] == 1

    unrouted = rlctl("judge", "-i", "r.jsonl", "--judge", "math", "--judge", "code")
    assert unrouted.returncode == 0
    assert "every record got every judge (math, code)" in unrouted.stderr.decode()

    typo = rlctl("judge", "-i", "r.jsonl", "--judge", "gsm8K:math")
    assert typo.returncode == 2
    assert "no record matched a --judge route" in typo.stderr.decode()


def test_routed_rewards_for_grpo_leave_other_sources_to_other_rewards() -> None:
    from rlctl.train.grpo import reward_functions

    funcs, names, weights = reward_functions(["gsm8k:math", "mbpp:code=0.5"], {})
    assert names == ["gsm8k:math", "mbpp:code"] and weights == [1.0, 0.5]
    columns = {k: [r[k] for r in MIXED[:2]] for k in ("reference", "id", "source")}
    completions = [r["completion"] for r in MIXED[:2]]
    math_rewards = funcs[0](completions, prompts=[r["prompt"] for r in MIXED[:2]], **columns)
    code_rewards = funcs[1](completions, prompts=[r["prompt"] for r in MIXED[:2]], **columns)
    assert math_rewards == [1.0, None] and code_rewards == [None, 1.0]


def test_grpo_warns_before_rewarding_the_wrong_thing(rlctl: Runner, tmp_path: Path) -> None:
    """Checked on the rows before any model loads (here the model does not even exist)."""
    tagged = {
        "id": "gsm8k/9",
        "source": "gsm8k",
        "messages": [
            {"role": "system", "content": "Reason in <think>, answer in <answer></answer>."},
            {"role": "user", "content": "2+2?"},
        ],
        "reference": "4",
    }
    rows = [tagged, {k: v for k, v in MIXED[1].items() if k not in ("completion", "sample")}]
    (tmp_path / "p.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    grpo = ("train", "grpo", "-i", "p.jsonl", "--model", "./nope", "--max-steps", "1")
    r = rlctl(*grpo, "--reward", "math", "--reward", "code")
    err = r.stderr.decode()
    assert r.returncode == 2 and "no such directory" in err
    assert "every sample gets every reward (math, code) across sources gsm8k, mbpp" in err
    assert "the prompts ask for <answer> tags, but the math reward's mode 'auto'" in err
    quiet = rlctl(
        *grpo, "--reward", "gsm8k:math", "--reward", "mbpp:code", "--math-mode", "answer-tag"
    )
    assert quiet.stderr.decode().strip().splitlines() == [
        "rlctl: error: --model ./nope: no such directory (a local path or an org/name hub id)"
    ]


def test_a_judge_option_of_the_wrong_type_is_one_line(rlctl: Runner, tmp_path: Path) -> None:
    """`--set judge.format.regex=[0-9]` (train grpo) or `--set format_regex=[0-9]` (rlctl
    judge) is a YAML list, not a regex: it used to reach the judge and fail as `TypeError:
    unhashable type` (exit 1). Each judge option has a type, checked where the section is read
    (rlctl judge and train grpo alike), before any model loads."""
    rollouts = tmp_path / "r.jsonl"
    rollouts.write_text('{"id": "a", "prompt": "p", "completion": "1"}\n')
    judge = ["judge", "-i", str(rollouts), "--judge", "format", "--set"]
    r = rlctl(*judge, "format_regex=[0-9]")
    line = r.stderr.decode().strip().splitlines()[-1]
    assert r.returncode == 2, line
    assert "format_regex: expected a string, got ['0-9']" in line and "quote" in line, line
    # the judge's own section, as in a grpo recipe: the same check, under its section name
    r = rlctl(*judge, "judge.format.regex=[0-9]")
    line = r.stderr.decode().strip().splitlines()[-1]
    assert r.returncode == 2 and "judge.format.regex: expected a string" in line, line
    r = rlctl(*judge, "judge.format.regx=x")
    line = r.stderr.decode().strip().splitlines()[-1]
    assert r.returncode == 2 and "did you mean 'judge.format.regex'?" in line, line
    r = rlctl(
        "train", "grpo", "-i", str(rollouts), "--model", "m", "--reward", "code",
        "--set", "judge.code.timeout=soon",
    )  # fmt: skip
    line = r.stderr.decode().strip().splitlines()[-1]
    assert r.returncode == 2 and "judge.code.timeout: expected a number, got 'soon'" in line, line


def test_rlctl_judge_reads_the_judge_section_of_a_grpo_recipe(
    rlctl: Runner, tmp_path: Path, sql
) -> None:
    """`rlctl judge` takes each judge's options in its `judge.NAME` section, as `train grpo
    --reward` does (issue 14): `--set judge.format.regex=...` used to be refused ("'judge' is
    not a section"), and the rm judge's error advised a `judge.rm.model` that rlctl judge did
    not take. A config file with a grpo recipe's `reward:` list and `judge:` block judges the
    same way in both commands; a flag given still wins over the section."""
    rollouts = tmp_path / "r.jsonl"
    rollouts.write_text(
        '{"id": "a", "prompt": "p", "completion": "42"}\n'
        '{"id": "b", "prompt": "p", "completion": "forty-two"}\n'
    )
    digits = ["judge", "-i", str(rollouts), "--judge", "format"]
    r = rlctl(*digits, "--set", "judge.format.regex='[0-9]+'")
    assert r.returncode == 0, r.stderr
    assert [x["reward"] for x in jsonl(r.stdout)] == [1.0, 0.0]
    recipe = tmp_path / "judging.yaml"
    recipe.write_text("reward: [format]\njudge:\n  format: {regex: '[a-z-]+'}\n")
    r = rlctl("judge", "-i", str(rollouts), "-c", str(recipe))
    assert r.returncode == 0, r.stderr
    assert [x["reward"] for x in jsonl(r.stdout)] == [0.0, 1.0]
    r = rlctl("judge", "-i", str(rollouts), "-c", str(recipe), "--format-regex", "[0-9]+")
    assert [x["reward"] for x in jsonl(r.stdout)] == [1.0, 0.0]
    regexes = [c["config"]["judge"]["format"]["regex"] for c in sql(
        "SELECT config FROM runs WHERE command = 'judge' ORDER BY started_at")]  # fmt: skip
    assert regexes == ["[0-9]+", "[a-z-]+", "[0-9]+"]  # each run records what its judge used
    (tmp_path / "before.yaml").write_text("judge: [format]\n")  # the list's old key
    r = rlctl("judge", "-i", str(rollouts), "-c", str(tmp_path / "before.yaml"))
    line = r.stderr.decode().strip().splitlines()[-1]
    assert r.returncode == 2 and "the list of judges is `reward`" in line, line
    r = rlctl("judge", "-i", str(rollouts), "--judge", "rm")
    line = r.stderr.decode().strip().splitlines()[-1]
    assert r.returncode == 2 and "judge.rm.model" in line, line
    r = rlctl("judge", "-i", str(rollouts), "--judge", "rm", "--set", "judge.rm.model=./nope")
    line = r.stderr.decode().strip().splitlines()[-1]
    assert r.returncode == 2 and "./nope" in line, line  # the section reached the judge
