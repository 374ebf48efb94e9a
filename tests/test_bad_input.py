"""Bad values anywhere (a flag, `--set`, a config file, a `trainer:` key) are one line on stderr
and exit 2 before anything loads: wrong types used to surface as a TypeError (exit 1), and
out-of-range values (a negative temperature, `--max-steps -3`, `--workers 0`, a NaN judge
weight) used to run to "ok"."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from tests.conftest import Runner

P = "-i p.jsonl"  # a valid prompt file
PAIRS = "-i pairs.jsonl"
CASES = [
    ("data pull gsm8k --sample --set limit=abc", "limit"),
    ("data pull gsm8k --sample --set seed=[1]", "seed"),
    ("data pull gsm8k --sample --limit -1", "--limit"),
    ("data pull gsm8k --sample --set shuffle=maybe", "shuffle"),
    ("data pull gsm8k --sample -c bad.yaml", "limit"),
    (f"train sft {P} --model NOPE --set trainer=abc", "trainer"),
    (
        f"train sft {P} --model NOPE --target meta.solution --set trainer.learning_rate=fast",
        "trainer.learning_rate",
    ),
    (
        f"train sft {P} --model NOPE --target meta.solution --set trainer.max_length=[1]",
        "trainer.max_length",
    ),
    (f"train sft {P} --model NOPE --max-steps -3", "--max-steps"),
    (f"train sft {P} --model NOPE --set max_steps=0", "max_steps"),
    (f"train dpo {PAIRS} --model NOPE --max-dropped 2", "--max-dropped"),
    (f"train beta-dpo {PAIRS} --model NOPE --stats-init warm", "--stats-init"),
    (f"rollout {P} --model NOPE --temperature -1", "--temperature"),
    (f"rollout {P} --model NOPE --temperature nan", "--temperature"),
    (f"rollout {P} --model NOPE --set temperature=-0.5", "temperature"),
    (f"rollout {P} --model NOPE --top-p 0", "--top-p"),
    (f"rollout {P} --model NOPE -n 0", "--num-samples"),
    (f"rollout {P} --model NOPE --max-tokens 0", "--max-tokens"),
    (f"rollout {P} --model NOPE --set stop=END", "stop"),
    (f"judge {P} --judge code --workers 0", "--workers"),
    (f"judge {P} --judge code --timeout -1", "--timeout"),
    (f"judge {P} --judge math=nan", "weight must be a finite number"),
    (f"judge {P} --judge math --set workers=abc", "workers"),
    ("eval gsm8k --model NOPE --shots -1", "--shots"),
    ("eval gsm8k --model NOPE --limit 0", "--limit"),
    (f"compare-logprobs {P} --model NOPE --temperature 0", "--temperature"),
    ("sql ''", "no SQL given"),
    ("sql ' ; '", "no SQL given"),
    ("data pull gsm8k --sample -c bomb.yaml", "expands to more than 100,000 values"),
    ("data pull gsm8k --sample --set 'x=[*a]'", "--set"),
    # records that parse but should not pass
    ("judge -i nanref.parquet --judge math", "got NaN"),
    ("judge -i infref.parquet --judge math", "got Infinity"),
    ("judge -i big.jsonl --judge math", "'meta.n': integer 1180591620717411303424"),
    ("judge -i dup.jsonl --judge math --pairs", "id 'a' names two different prompts"),
    ("judge -i pairs.jsonl --judge math", "this is a pair record"),
    # store paths that are not directories
    ("--store afile runs ls", "is not a directory"),
    ("--store afile/x sql 'select 1'", "cannot create it (Not a directory)"),
    ("--store /proc/rlctl-store runs ls", "cannot create it"),
]


@pytest.mark.parametrize(("cmd", "named"), CASES, ids=[c for c, _ in CASES])
def test_bad_values_are_one_line_and_exit_2(
    rlctl: Runner, store: Path, tmp_path: Path, cmd: str, named: str
) -> None:
    prompt = {"id": "a", "messages": [{"role": "user", "content": "2+2?"}], "reference": "4"}
    prompt["meta"] = {"solution": "2 + 2 = 4\n#### 4"}
    (tmp_path / "p.jsonl").write_bytes(orjson.dumps(prompt) + b"\n")
    pair = {"id": "a", "prompt": "2+2?", "chosen": "4", "rejected": "5"}
    (tmp_path / "pairs.jsonl").write_bytes(orjson.dumps(pair) + b"\n")
    (tmp_path / "bad.yaml").write_text("limit: lots\n")
    # "billion laughs": 434 bytes of aliases once became a 1.8 GB run.json
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcde", "bcdef", strict=True):
        bomb.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 10)}]")
    (tmp_path / "bomb.yaml").write_text("\n".join(bomb) + "\n")
    _record_files(tmp_path)
    r = rlctl(shell=f"$RLCTL {cmd}")
    err = r.stderr.decode().strip().splitlines()
    assert r.returncode == 2, r.stderr.decode()
    assert len(err) == 1 and err[0].startswith("rlctl: error:"), err
    assert named in err[0] and "Traceback" not in r.stderr.decode()
    ok = [p for p in (store / "runs").glob("*/run.json") if b'"status": "ok"' in p.read_bytes()]
    assert not ok  # nothing ran to "ok" on a bad value


def _record_files(d: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = {"id": "a", "messages": [{"role": "user", "content": "2+2?"}], "completion": "4"}
    for name, value in (("nanref", float("nan")), ("infref", float("inf"))):
        rows = [{**p, "sample": 0, "reference": 4.0}, {**p, "sample": 1, "reference": value}]
        pq.write_table(pa.Table.from_pylist(rows), d / f"{name}.parquet")
    big = {**p, "sample": 0, "reference": "4", "meta": {"n": 2**70}}
    (d / "big.jsonl").write_text(json.dumps(big) + "\n")
    other = {**p, "messages": [{"role": "user", "content": "3+3?"}], "sample": 1}
    dup = [{**p, "sample": 0, "reference": "4"}, {**other, "reference": "6"}]
    (d / "dup.jsonl").write_text("".join(json.dumps(r) + "\n" for r in dup))
    (d / "afile").write_text("not a store")


def test_a_damaged_run_json_is_listed_not_fatal(rlctl: Runner, store: Path) -> None:
    """A hand-edited run.json used to take `sql`, `runs ls` and `store rebuild` down (a wrong
    type) or vanish without a word (not JSON)."""
    for _ in range(3):
        assert rlctl("data", "pull", "gsm8k", "--sample", "--limit", "1").returncode == 0
    a, b, _ = sorted((store / "runs").iterdir())
    (a / "run.json").write_text("{torn")
    run = json.loads((b / "run.json").read_text())
    (b / "run.json").write_text(json.dumps({**run, "started_at": 12345}))
    for cmd in (("store", "rebuild"), ("runs", "ls"), ("sql", "select 1")):
        r = rlctl(*cmd)
        assert r.returncode == 0, (cmd, r.stderr.decode())
    r = rlctl("sql", "select run_id, status, error from runs order by run_id", "--json")
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["status"] for x in rows] == ["damaged", "damaged", "ok"]
    assert "not valid JSON" in rows[0]["error"] and str(a / "run.json") in rows[0]["error"]
    assert "'started_at' has the wrong type" in rows[1]["error"]
