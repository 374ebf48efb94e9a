"""`--dry-run` on every stage: the real checks (config, input records, model files, endpoint),
the resolved config printed as YAML that `-c` takes back, and nothing recorded in the store."""

from __future__ import annotations

import socket
from pathlib import Path

import click
import orjson
import pytest
import yaml

from tests.chat_server import ChatServer
from tests.conftest import Runner


def _runs(store: Path) -> list[str]:
    return sorted(p.name for p in (store / "runs").glob("*")) if (store / "runs").exists() else []


def _commands() -> dict[str, click.Command]:
    from rlctl.cli import main

    found: dict[str, click.Command] = {}

    def walk(group: click.Group, prefix: str) -> None:
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            if isinstance(cmd, click.Group):
                walk(cmd, f"{prefix}{name} ")
            elif cmd is not None:
                found[f"{prefix}{name}"] = cmd

    walk(main, "")
    return found


def test_every_stage_has_a_dry_run() -> None:
    """Every command that takes a config (and `serve vllm`, `data validate`) has --dry-run."""
    commands = _commands()
    stages = [n for n, c in commands.items() if any(p.name == "sets" for p in c.params)]
    assert {"rollout", "judge", "data pull", "train grpo", "eval run", "eval suite"} <= set(stages)
    for name in [*stages, "serve vllm", "data validate"]:
        assert any(p.name == "dry_run" for p in commands[name].params), name


def test_a_dry_run_checks_the_pipe_and_records_nothing(
    rlctl: Runner, store: Path, tiny_model: Path
) -> None:
    r = rlctl("data", "pull", "gsm8k", "--sample", "--limit", "5", "--dry-run")
    assert r.returncode == 0, r.stderr.decode()
    assert yaml.safe_load(r.stdout)["limit"] == 5
    assert "5 prompt records" in r.stderr.decode() and _runs(store) == []
    r = rlctl(
        shell=f"$RLCTL data pull gsm8k --sample --limit 3 "
        f"| $RLCTL rollout --model {tiny_model} -n 2 --dry-run"
    )
    assert r.returncode == 0, r.stderr.decode()
    err = r.stderr.decode()
    assert "3 valid prompt records from stdin" in err and "qwen2" in err, err
    assert yaml.safe_load(r.stdout)["num_samples"] == 2
    (pull,) = _runs(store)  # the producer ran for real; the dry run recorded nothing
    assert "data-pull" in pull

    bad = rlctl("rollout", "--model", "./nope", "--dry-run", input=b"")
    assert bad.returncode == 2 and bad.stderr.decode().count("\n") == 1
    assert "--model ./nope: no such directory" in bad.stderr.decode()


def test_train_dry_run_prints_a_config_that_reproduces_itself(
    rlctl: Runner, store: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """The printed YAML, given back with -c, resolves to the same config; a bad record stops
    the dry run with its file and line, as it would stop the run."""
    pairs = tmp_path / "pairs.jsonl"
    r = rlctl("data", "pull", "hh-rlhf", "--sample", "--limit", "12", "-o", str(pairs))
    assert r.returncode == 0, r.stderr.decode()
    before = _runs(store)
    args = ("train", "dpo", "-i", str(pairs), "--model", str(tiny_model), "--dry-run")
    first = rlctl(*args, "--max-steps", "3", "--set", "trainer.beta=0.2")
    assert first.returncode == 0, first.stderr.decode()
    conf = yaml.safe_load(first.stdout)
    assert conf["trainer"] == {"beta": 0.2, "max_steps": 3}
    assert "12 dpo rows" in first.stderr.decode() and "DPOConfig built" in first.stderr.decode()
    (tmp_path / "dpo.yaml").write_bytes(first.stdout)
    again = rlctl(*args, "-c", str(tmp_path / "dpo.yaml"))
    assert again.returncode == 0 and again.stdout == first.stdout
    assert _runs(store) == before

    lines = pairs.read_bytes().splitlines()
    broken = orjson.loads(lines[4])
    del broken["rejected"]
    lines[4] = orjson.dumps(broken)
    pairs.write_bytes(b"\n".join(lines) + b"\n")
    bad = rlctl(*args)
    assert bad.returncode == 2, bad.stderr.decode()
    assert f"{pairs}:5" in bad.stderr.decode() and "rejected" in bad.stderr.decode()
    assert _runs(store) == before


def test_a_dry_run_asks_the_endpoint_what_it_serves(rlctl: Runner, store: Path, tmp_path: Path):
    rollouts = tmp_path / "r.jsonl"
    rec = {"id": "q", "prompt": "2+2?", "reference": "4", "completion": "#### 4"}
    rollouts.write_bytes(orjson.dumps(rec) + b"\n")
    judge = ("judge", "-i", str(rollouts), "--judge", "llm", "--dry-run")
    with ChatServer(models=("judge-7b",)) as server:
        ok = rlctl(*judge, "--base-url", server.url, "--model", "judge-7b")
        assert ok.returncode == 0, ok.stderr.decode()
        assert "up, serves judge-7b" in ok.stderr.decode()
        wrong = rlctl(*judge, "--base-url", server.url, "--model", "judge-70b")
        assert wrong.returncode == 2
        assert "serves judge-7b, not --model judge-70b" in wrong.stderr.decode()
        assert not server.requests  # nothing was judged
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    down = rlctl(*judge, "--base-url", dead, "--model", "judge-7b")
    assert down.returncode == 1 and "unreachable" in down.stderr.decode()  # as the run says
    assert _runs(store) == []


@pytest.mark.parametrize("stage", ["eval", "serve"])
def test_eval_and_serve_dry_runs(
    rlctl: Runner, store: Path, tiny_model: Path, tmp_path: Path, stage: str
) -> None:
    """eval: the task found and its data converted as the run would (docs counted, hashed);
    serve: vLLM's Python and the port checked, the server's command printed."""
    if stage == "eval":
        data = tmp_path / "gsm8k.jsonl"
        assert (
            rlctl("data", "pull", "gsm8k", "--sample", "--limit", "4", "-o", str(data)).returncode
            == 0
        )
        before = _runs(store)
        r = rlctl(
            "eval", "gsm8k", "--model", str(tiny_model), "--data", str(data), "--dry-run",
            "--concurrency", "4", "--max-model-len", "64",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr.decode()
        # options of other engines: said, not dropped in silence
        assert "--backend hf does not read --concurrency, --max-model-len" in r.stderr.decode()
        assert f"task gsm8k: file:{data} (4 docs" in r.stderr.decode()
        assert yaml.safe_load(r.stdout)["data"] == str(data)
        assert _runs(store) == before
        return
    import os

    python = os.environ.get("RLCTL_VLLM_PYTHON")
    if not python:
        pytest.skip("RLCTL_VLLM_PYTHON not set (make test sets it)")
    args = ("serve", "vllm", "--model", str(tiny_model), "--python", python, "--dry-run")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        busy = rlctl(*args, "--port", str(port))
        assert busy.returncode == 2 and f"--port {port}" in busy.stderr.decode()
    r = rlctl(*args, "--port", str(port))
    assert r.returncode == 0, r.stderr.decode()
    assert f"vllm.entrypoints.openai.api_server --model {tiny_model}" in r.stderr.decode()
    assert _runs(store) == []
