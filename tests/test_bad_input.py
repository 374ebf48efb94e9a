"""Bad values anywhere (a flag, `--set`, a config file, a `trainer:` key) are one line on stderr
and exit 2 before anything loads: wrong types used to surface as a TypeError (exit 1), and
out-of-range values (a negative temperature, `--max-steps -3`, `--workers 0`, a NaN judge
weight) used to run to "ok"."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sys
import tempfile
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
    (f"train beta-dpo {PAIRS} --model NOPE --rho 1", "--rho"),
    (f"train beta-dpo {PAIRS} --model NOPE --set rho=1", "rho: 1.0 is out of range (>= 0 and < 1)"),
    (f"rollout {P} --model NOPE --temperature -1", "--temperature"),
    (f"rollout {P} --model NOPE --temperature nan", "--temperature"),
    (f"rollout {P} --model NOPE --set temperature=-0.5", "temperature"),
    (f"rollout {P} --model NOPE --top-p 0", "--top-p"),
    (f"rollout {P} --model NOPE -n 0", "--num-samples"),
    (f"rollout {P} --model NOPE --max-tokens 0", "--max-tokens"),
    (f"rollout {P} --model NOPE --set 'stop={{a: 1}}'", "'stop' is not a section"),
    (f"rollout {P} --model NOPE --set 'stop=[1]'", "stop: expected a list of strings"),
    (f"rollout {P} --set 'model=[x]'", "model: expected a string"),
    (f"rollout {P} --model NOPE --set top_k=1.5", "top_k: expected an integer"),
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
    # a record of the wrong kind, to every stage that reads records
    ("rollout -i pairs.jsonl --model TINY -n 1", "this is a pair record"),
    ("eval gsm8k --model TINY --data pairs.jsonl --shots 0", "a pair record, not a prompt"),
    (
        "eval gsm8k --model TINY --data p.jsonl --shots 8 --fewshot-data test",
        "8 shots need at least 8 examples",
    ),
    ("compare-logprobs -i pairs.jsonl --model TINY", "this is a pair record"),
    ("train dpo -i p.jsonl --model TINY --max-steps 1", "field 'chosen': missing"),
    ("data pull gsm8k --from pairs.jsonl", "field 'question': missing"),
    # models: truncated weights name the file
    ("rollout -i p.jsonl --model TRUNC -n 1", "model.safetensors is truncated"),
    (
        "train sft -i p.jsonl --model TRUNC --target meta.solution --max-steps 1",
        "model.safetensors is truncated",
    ),
    ("rollout -i p.jsonl --model NOSHARD -n 1", "model-00002-of-00002.safetensors"),
    # input files that cannot be read as records
    ("judge -i missing.jsonl --judge math", "missing.jsonl: no such file"),
    ("judge -i adir --judge math", "adir: is a directory"),
    ("judge -i '*.nomatch' --judge math", "no file matches"),
    ("judge -i empty.jsonl --judge math", "no records"),
    ("judge -i bin.jsonl --judge math", "not UTF-8"),
    ("judge -i trunc.jsonl.gz --judge math", "is the gzip complete"),
    ("judge -i /proc/self/mem --judge math", "/proc/self/mem: cannot read it"),
    ("judge -i nulls.jsonl --judge math", "got a list holding null"),
    # unknown names and malformed configs
    ("judge -i p.jsonl --judge nosuch", "unknown judge"),
    ("train grpo -i p.jsonl --model TINY --reward nosuch", "unknown judge"),
    ("judge -i p.jsonl --judge llm", "needs --base-url"),
    ("data pull nosuch", "unknown dataset 'nosuch'"),
    ("data pull gsm8k --from missing.jsonl", "--from missing.jsonl: no such file"),
    ("eval nosuchtask --model TINY", "no task 'nosuchtask'"),
    ("runs show NOSUCH", "no run 'NOSUCH'"),
    ("sql 'selec 1'", "SQL error"),
    ("judge -i p.jsonl --judge math -c missing.yaml", "config file not found"),
    ("judge -i p.jsonl --judge math -c unclosed.yaml", "unclosed.yaml:2: invalid YAML"),
    ("judge -i p.jsonl --judge math -c list.yaml", "must be a mapping"),
    ("judge -i p.jsonl --judge math --set limit", "expected KEY=VALUE"),
]


@pytest.mark.parametrize(("cmd", "named"), CASES, ids=[c for c, _ in CASES])
def test_bad_values_are_one_line_and_exit_2(
    rlctl: Runner, store: Path, tmp_path: Path, tiny_model: Path, cmd: str, named: str
) -> None:
    assert len(CASES) >= 60
    cmd = cmd.replace("TINY", str(tiny_model))
    if "TRUNC" in cmd or "NOSHARD" in cmd:
        cmd = cmd.replace("TRUNC", str(_truncated(tiny_model, tmp_path)))
        cmd = cmd.replace("NOSHARD", str(_missing_shard(tiny_model, tmp_path)))
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


def _truncated(model: Path, d: Path) -> Path:
    out = d / "trunc"
    shutil.copytree(model, out)
    weights = out / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    return out


def _missing_shard(model: Path, d: Path) -> Path:
    out = d / "noshard"
    shutil.copytree(model, out)
    index = {"weight_map": {"a": "model.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (out / "model.safetensors.index.json").write_text(json.dumps(index))
    return out


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
    (d / "adir").mkdir()
    (d / "empty.jsonl").write_text("")
    (d / "bin.jsonl").write_bytes(b"\x00\x01\x02\n")
    (d / "trunc.jsonl.gz").write_bytes(gzip.compress(b'{"id": "a"}\n' * 100)[:20])
    (d / "unclosed.yaml").write_text("limit: [1, 2\n")
    (d / "list.yaml").write_text("- 1\n- 2\n")
    (d / "nulls.jsonl").write_text(json.dumps({**p, "sample": 0, "messages": [None]}) + "\n")


def test_a_damaged_run_json_is_listed_not_fatal(rlctl: Runner, store: Path) -> None:
    """A hand-edited run.json used to take `sql`, `runs ls` and `store rebuild` down (a wrong
    type) or vanish without a word (not JSON)."""
    for _ in range(4):
        assert rlctl("data", "pull", "gsm8k", "--sample", "--limit", "1").returncode == 0
    a, b, c, _ = sorted((store / "runs").iterdir())
    (a / "run.json").write_text("{torn")
    run = json.loads((b / "run.json").read_text())
    assert run["format"] == 1  # run.json says which layout it is
    (b / "run.json").write_text(json.dumps({**run, "started_at": 12345}))
    run = json.loads((c / "run.json").read_text())
    (c / "run.json").write_text(json.dumps({**run, "format": 2}))
    for cmd in (("store", "rebuild"), ("runs", "ls"), ("sql", "select 1")):
        r = rlctl(*cmd)
        assert r.returncode == 0, (cmd, r.stderr.decode())
    r = rlctl("sql", "select run_id, status, error from runs order by run_id", "--json")
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["status"] for x in rows] == ["damaged", "damaged", "damaged", "ok"]
    assert "not valid JSON" in rows[0]["error"] and str(a / "run.json") in rows[0]["error"]
    assert "'started_at' has the wrong type" in rows[1]["error"]
    assert "format 2, written by a newer rlctl" in rows[2]["error"]


def test_an_unreadable_input_file_is_named(tmp_path: Path) -> None:
    """Not a traceback from deep inside a stage: the file and the reason, exit 2. As root
    nothing is unreadable, so the CLI runs in a forked child whose filesystem uid is nobody
    (which drops root's permission override), after one warm-up run has loaded its modules."""
    import ctypes

    from rlctl.cli import run

    shared_dir = Path(tempfile.mkdtemp())
    try:
        shared_dir.chmod(0o777)
        prompt = {"id": "a", "messages": [{"role": "user", "content": "2+2?"}], "reference": "4"}
        ok, secret = shared_dir / "ok.jsonl", shared_dir / "secret.jsonl"
        for f in (ok, secret):
            f.write_bytes(orjson.dumps({**prompt, "completion": "4"}) + b"\n")
        secret.chmod(0)
        store = shared_dir / "store"
        argv = ["--store", str(store), "judge", "--judge", "math", "-o", str(shared_dir / "o")]
        with pytest.raises(SystemExit) as warm:  # loads every module the command needs
            run([*argv, "-i", str(ok)])
        assert warm.value.code in (0, None)
        store.chmod(0o777)
        for d in store.rglob("*"):
            d.chmod(0o777)
        err = tmp_path / "stderr"
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child reports through its exit code and stderr)
            code = 3
            try:
                fd = os.open(err, os.O_WRONLY | os.O_CREAT, 0o666)
                sys.stderr = os.fdopen(fd, "w", buffering=1)
                if os.geteuid() == 0:
                    ctypes.CDLL(None).setfsuid(65534)
                run([*argv, "-i", str(secret)])
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        lines = err.read_text().strip().splitlines()
        assert os.WEXITSTATUS(status) == 2, lines
        assert lines == [
            f"rlctl: error: {secret}: cannot read it (Permission denied); check its permissions"
        ]
    finally:
        shutil.rmtree(shared_dir, ignore_errors=True)
