"""`rlctl rollout` with the hf backend on the tiny model: pipes, lineage, logprobs, errors."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from tests.conftest import Runner, jsonl


def test_model_tiny_is_a_registered_artifact(tiny_model: Path) -> None:
    config = json.loads((tiny_model / "config.json").read_text())
    assert config["model_type"] == "qwen2"
    assert config["hidden_size"] // config["num_attention_heads"] >= 32  # vLLM CPU needs it
    runs = sorted((tiny_model.parent / "store" / "runs").iterdir())
    info = json.loads((runs[0] / "run.json").read_text())
    assert info["artifacts"][0]["kind"] == "model" and info["artifacts"][0]["path"] == str(
        tiny_model
    )
    assert 100_000 < info["config"]["model"]["parameters"] < 1_000_000


def test_pipe_pull_rollout_judge_with_lineage(rlctl: Runner, sql, tiny_model: Path) -> None:
    r = rlctl(
        shell=f"set -o pipefail; $RLCTL data pull gsm8k --sample --limit 8 "
        f"| $RLCTL rollout --model {tiny_model} -n 2 --backend hf --logprobs --max-tokens 24 "
        f"| $RLCTL judge --judge math"
    )
    assert r.returncode == 0, r.stderr
    judged = jsonl(r.stdout)
    assert len(judged) == 16 and {j["sample"] for j in judged} == {0, 1}
    for j in judged:
        assert j["backend"] == "hf" and j["model"] == str(tiny_model)
        assert len(j["completion_token_ids"]) == len(j["completion_logprobs"]) > 0
        assert all(lp <= 0 for lp in j["completion_logprobs"])
        assert j["sampling"]["n"] == 2 and j["reward"] in (0.0, 1.0)
    rows = sql(
        "SELECT r.command, p.command AS parent FROM lineage l JOIN runs r USING (run_id) "
        "JOIN runs p ON p.run_id = l.parent_run_id ORDER BY r.started_at"
    )
    assert {(x["command"], x["parent"]) for x in rows} == {
        ("rollout", "data pull"),
        ("judge", "rollout"),
    }
    assert sql("SELECT count(*) AS n FROM rollouts") == [{"n": 16}]


def _prompts(tmp_path: Path, n: int = 5) -> Path:
    path = tmp_path / "p.jsonl"
    recs = [
        {"id": f"p{i}", "messages": [{"role": "user", "content": "Count: " + "one two " * i}]}
        for i in range(n)
    ]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))
    return path


def test_greedy_is_reproducible_and_batching_does_not_change_it(
    rlctl: Runner, tiny_model: Path, tmp_path: Path
) -> None:
    p = _prompts(tmp_path)
    args = [
        "rollout",
        "-i",
        str(p),
        "--model",
        str(tiny_model),
        "--temperature",
        "0",
        "--max-tokens",
        "16",
        "--logprobs",
    ]
    a = jsonl(rlctl(*args, "--batch-size", "5").stdout)
    b = jsonl(rlctl(*args, "--batch-size", "1").stdout)
    assert [x["completion_token_ids"] for x in a] == [x["completion_token_ids"] for x in b]
    for x, y in zip(a, b, strict=True):
        assert x["completion_logprobs"] == pytest.approx(y["completion_logprobs"], abs=1e-4)


def test_seeded_sampling_is_reproducible(rlctl: Runner, tiny_model: Path, tmp_path: Path) -> None:
    p = _prompts(tmp_path, 3)
    args = ["rollout", "-i", str(p), "--model", str(tiny_model), "-n", "3", "--max-tokens", "12"]
    one = jsonl(rlctl(*args, "--seed", "7").stdout)
    two = jsonl(rlctl(*args, "--seed", "7").stdout)
    other = jsonl(rlctl(*args, "--seed", "8").stdout)
    assert [x["completion"] for x in one] == [x["completion"] for x in two]
    assert [x["completion"] for x in one] != [x["completion"] for x in other]


def test_stop_strings_cut_text_and_tokens(rlctl: Runner, tiny_model: Path, tmp_path: Path) -> None:
    greedy = [
        "rollout",
        "-i",
        str(_prompts(tmp_path, 4)),
        "--model",
        str(tiny_model),
        "--temperature",
        "0",
        "--max-tokens",
        "40",
    ]
    free = jsonl(rlctl(*greedy).stdout)
    stop = next(x["completion"][3:5] for x in free if len(x["completion"]) > 6)
    cut = jsonl(rlctl(*greedy, "--stop", stop, "--logprobs").stdout)
    for x in cut:
        assert stop not in x["completion"]
        assert len(x["completion_logprobs"]) == len(x["completion_token_ids"])
    assert any(x["finish_reason"] == "stop" for x in cut)


def test_bad_model_path_long_prompt_and_missing_model(
    rlctl: Runner, sql, tiny_model: Path, tmp_path: Path
) -> None:
    p = _prompts(tmp_path, 1)
    r = rlctl("rollout", "-i", str(p), "--model", str(tmp_path / "nope"))
    assert r.returncode == 2 and "no such directory" in r.stderr.decode()
    assert len(r.stderr.decode().strip().splitlines()) == 1
    long = tmp_path / "long.jsonl"
    long.write_bytes(orjson.dumps({"id": "x", "prompt": "one two three " * 1500}) + b"\n")
    r = rlctl("rollout", "-i", str(long), "--model", str(tiny_model), "--no-chat-template")
    assert r.returncode == 2 and "context of 2048" in r.stderr.decode(), r.stderr
    assert len(r.stderr.decode().strip().splitlines()) == 1
    r = rlctl("rollout", "-i", str(p))
    assert r.returncode == 2 and "--model" in r.stderr.decode()
    partial = sql("SELECT complete FROM artifacts WHERE kind = 'rollout'")
    assert all(not a["complete"] for a in partial)  # nothing half-written marked complete


def test_engine_dtype_is_read_from_the_engine_and_defaults_are_visible(tmp_path: Path) -> None:
    """vLLM's engine config line is the truth about the dtype it runs; a dtype nobody chose is
    marked as the engine's, next to the checkpoint's own."""
    from rlctl.backends.generation import engine_record
    from rlctl.stages.serve import engine_dtype_of

    log = tmp_path / "server.log"
    log.write_text(
        "INFO 11-30 [core.py:93] Initializing a V1 LLM engine (v0.32.0) with config: "
        "model='/m', speculative_config=None, tokenizer='/m', dtype=torch.bfloat16, "
        "max_seq_len=512, kv_cache_dtype=auto\n"
    )
    assert engine_dtype_of(log) == "bfloat16"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text('{"dtype": "float32"}')
    rec = engine_record("vllm server", "bfloat16", None, False, str(tmp_path / "m"))
    assert rec["dtype_chosen_by"] == "engine default" and rec["checkpoint_dtype"] == "float32"
    assert engine_record("vllm", "torch.float32", "float32", True)["dtype"] == "float32"
    assert engine_record("openai-compatible server", None, None, None)["dtype_chosen_by"] == (
        "unknown"
    )


def test_each_backend_reads_its_own_section(rlctl: Runner, sql, tmp_path: Path) -> None:
    """Each generation backend's options are its own config section (`openai.api`,
    `hf.batch_size`, `vllm.max_model_len`), filled by the flat flags too, as each judge has
    `judge.NAME` (issue 14). Before, `--set openai.api=...` was an unknown key, and an option
    of a backend not running (`--batch-size` with --backend openai) was dropped in silence:
    now it is said on stderr, and the run records every section as resolved."""
    from tests.chat_server import ChatServer

    prompts = _prompts(tmp_path, 2)
    with ChatServer(complete=lambda p: "#### 4", models=("served",)) as server:
        r = rlctl(
            "rollout", "-i", str(prompts), "--backend", "openai", "--base-url", server.url,
            "--set", "openai.api=completions", "--batch-size", "8",
            "--set", "vllm.enforce_eager=true",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        bodies = list(server.requests)
    assert len(bodies) == 2 and all("prompt" in b and "messages" not in b for b in bodies)
    assert [x["completion"] for x in jsonl(r.stdout)] == ["#### 4", "#### 4"]
    err = r.stderr.decode()
    assert (
        "--backend openai does not read hf.batch_size (--batch-size), "
        "vllm.enforce_eager (--enforce-eager)" in err
    ), err
    (row,) = sql("SELECT config FROM runs WHERE command = 'rollout'")
    conf = row["config"]
    assert conf["openai"] == {"api": "completions", "concurrency": 16}
    assert conf["hf"] == {"batch_size": 8} and conf["vllm"]["enforce_eager"] is True
    bad = rlctl("rollout", "-i", str(prompts), "--model", "m", "--set", "vllm.max_model_len=big")
    line = bad.stderr.decode().strip().splitlines()[-1]
    assert bad.returncode == 2 and "vllm.max_model_len: expected an integer" in line, line
    bad = rlctl("rollout", "-i", str(prompts), "--model", "m", "--set", "openai.concurency=4")
    line = bad.stderr.decode().strip().splitlines()[-1]
    assert bad.returncode == 2 and "did you mean 'openai.concurrency'?" in line, line
