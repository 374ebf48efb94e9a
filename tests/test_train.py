"""`rlctl train`: TRL steps on the tiny model, on CPU, recorded in the store."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from tests.conftest import Runner, jsonl, stages

pytestmark = pytest.mark.slow


def _checkpoint(sql, command: str) -> Path:
    (row,) = sql(
        f"SELECT a.path FROM artifacts a JOIN runs r USING (run_id) WHERE r.command = '{command}' AND a.kind = 'model'"
    )
    return Path(row["path"])


def _generates(rlctl: Runner, checkpoint: Path) -> None:
    r = stages(
        rlctl, "data pull gsm8k --sample --limit 2", f"rollout --model {checkpoint} --max-tokens 8"
    )
    assert r.returncode == 0, r.stderr
    assert len(jsonl(r.stdout)) == 2


def test_synthetic_preference_loop_as_one_pipe(rlctl: Runner, sql, tiny_model: Path) -> None:
    r = rlctl(
        shell=f"set -o pipefail; $RLCTL data pull gsm8k --sample --limit 16 "
        f"| $RLCTL rollout --model {tiny_model} -n 4 --max-tokens 16 "
        f"| $RLCTL judge --judge format --format-search --format-regex '[0-9]' --pairs "
        f"| $RLCTL train dpo --model {tiny_model} --max-steps 2"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == b""  # trainer logs go to stderr
    losses = sql("SELECT step, value FROM metrics WHERE name = 'loss' ORDER BY step")
    assert [x["step"] for x in losses] == [1, 2]
    chain = sql(
        "WITH RECURSIVE up(run_id, depth) AS ("
        " SELECT run_id, 0 FROM runs WHERE command = 'train dpo'"
        " UNION ALL SELECT l.parent_run_id, depth + 1 FROM lineage l JOIN up USING (run_id)"
        " WHERE l.parent_run_id IS NOT NULL)"
        " SELECT r.command FROM up JOIN runs r USING (run_id) ORDER BY depth"
    )
    assert [x["command"] for x in chain] == ["train dpo", "judge", "rollout", "data pull"]
    (base,) = sql(
        "SELECT input FROM lineage l JOIN runs r USING (run_id) WHERE r.command = 'train dpo' AND via = 'model'"
    )
    assert base["input"] == str(tiny_model)
    _generates(rlctl, _checkpoint(sql, "train dpo"))


def test_sft_on_gsm8k_solutions(rlctl: Runner, sql, tiny_model: Path) -> None:
    r = stages(
        rlctl,
        "data pull gsm8k --sample --limit 8",
        f"train sft --model {tiny_model} --target meta.solution --max-steps 2",
    )
    assert r.returncode == 0, r.stderr
    assert sql("SELECT count(*) AS n FROM metrics WHERE name = 'loss'") == [{"n": 2}]
    _generates(rlctl, _checkpoint(sql, "train sft"))


def test_beta_dpo_writes_margin_logs(rlctl: Runner, sql, tiny_model: Path) -> None:
    """The margin log names each pair, carries the step its metrics carry, and is a view."""
    r = stages(
        rlctl,
        "data pull hh-rlhf --sample --limit 8",
        f"train beta-dpo --model {tiny_model} --max-steps 2 --rho 0.5 --set trainer.per_device_train_batch_size=4 --set trainer.max_length=1024",
    )
    assert r.returncode == 0, r.stderr
    names = {x["name"] for x in sql("SELECT DISTINCT name FROM metrics")}
    assert {"beta_dpo/beta", "beta_dpo/kept", "beta_dpo/m0", "beta_dpo/sigma", "loss"} <= names
    kept = {
        x["step"]: x["value"]
        for x in sql("SELECT step, value FROM metrics WHERE name = 'beta_dpo/kept'")
    }
    betas = {
        x["step"]: x["value"]
        for x in sql("SELECT step, value FROM metrics WHERE name = 'beta_dpo/beta'")
    }
    rows = sql("SELECT step, id, margin, kept, beta, run_id FROM margin_logs ORDER BY step, id")
    by_step: dict[int, list[dict]] = {}
    for row in rows:
        by_step.setdefault(row["step"], []).append(row)
    assert sorted(by_step) == sorted(kept) == [1, 2]  # the metrics' steps, not one behind
    for step, pairs in by_step.items():
        assert kept[step] == max(1, int(len(pairs) * 0.5)) == sum(p["kept"] for p in pairs)
        assert all(p["beta"] == pytest.approx(betas[step]) for p in pairs)
    pulled = {x["id"] for x in sql("SELECT id FROM pairs")}
    assert {row["id"] for row in rows} <= pulled and len({row["id"] for row in rows}) == 8
    (train,) = sql("SELECT run_id FROM runs WHERE command = 'train beta-dpo'")
    assert {row["run_id"] for row in rows} == {train["run_id"]}


@pytest.mark.parametrize(
    ("cmd", "msg"),
    [
        (
            "train dpo --model NOPE --set trainer.learnin_rate=1",
            "did you mean 'trainer.learning_rate'",
        ),
        ("train sft --model NOPE", "field 'completion' missing"),
    ],
)
def test_bad_input_fails_before_any_model_is_loaded(rlctl: Runner, cmd: str, msg: str) -> None:
    """The model path does not exist: an error about it would mean it was loaded first."""
    src = "hh-rlhf" if "dpo" in cmd else "gsm8k"
    r = stages(rlctl, f"data pull {src} --sample --limit 2", f"{cmd}")
    assert r.returncode == 2, r.stderr
    errors = [x for x in r.stderr.decode().splitlines() if x.startswith("rlctl: error:")]
    assert len(errors) == 1 and msg in errors[0], r.stderr


def test_dpo_refuses_prompt_records(rlctl: Runner, tiny_model: Path) -> None:
    r = stages(rlctl, "data pull gsm8k --sample --limit 2", f"train dpo --model {tiny_model}")
    assert r.returncode == 2 and "field 'chosen': missing" in r.stderr.decode()


@pytest.mark.parametrize("head", [[], ["--fp32-lm-head"]])
def test_grpo_with_judge_rewards(rlctl: Runner, sql, tiny_model: Path, head: list[str]) -> None:
    r = stages(
        rlctl,
        "data pull gsm8k --sample --limit 8",
        f"train grpo --model {tiny_model} --reward math --reward format=0.1 --max-steps 2 --set trainer.max_completion_length=16 {' '.join(head)}",
    )
    assert r.returncode == 0, r.stderr
    names = {x["name"] for x in sql("SELECT DISTINCT name FROM metrics")}
    assert {"reward", "rewards/rlctl_math/mean", "rewards/rlctl_format/mean", "loss"} <= names
    samples = sql(
        "SELECT step, completion, reward, rewards, advantage FROM train_samples ORDER BY step"
    )
    assert {s["step"] for s in samples} == {1, 2}
    for s in samples:
        assert set(s["rewards"]) == {"math", "format"}
        assert s["reward"] == pytest.approx(s["rewards"]["math"] + 0.1 * s["rewards"]["format"])
        assert isinstance(s["advantage"], float)
    (cfg,) = sql("SELECT run_id, config FROM runs WHERE command = 'train grpo'")
    assert cfg["config"]["fp32_lm_head"] is bool(head)
    # every sample joins its prompt record and its run
    joined = sql(
        "SELECT s.run_id, s.id, s.reference, p.reference AS gold FROM train_samples s "
        "LEFT JOIN prompts p USING (id)"
    )
    assert joined and {x["run_id"] for x in joined} == {cfg["run_id"]}
    assert all(x["gold"] is not None and x["reference"] == x["gold"] for x in joined)
    _generates(rlctl, _checkpoint(sql, "train grpo"))


def test_grpo_unknown_reward_fails_before_the_model(rlctl: Runner) -> None:
    r = stages(
        rlctl, "data pull gsm8k --sample --limit 2", "train grpo --model NOPE --reward mathh"
    )
    assert r.returncode == 2
    errors = [x for x in r.stderr.decode().splitlines() if x.startswith("rlctl: error:")]
    assert len(errors) == 1 and "did you mean 'math'" in errors[0]


GRPO_SMALL = "--set trainer.max_completion_length=8 --set trainer.save_steps=2"


def test_resume_continues_exactly_where_it_stopped(
    rlctl: Runner, sql, tiny_model: Path, tmp_path: Path
) -> None:
    (tmp_path / "p.jsonl").write_bytes(
        rlctl("data", "pull", "gsm8k", "--sample", "--limit", "16").stdout
    )
    base = f"train grpo -i p.jsonl --model {tiny_model} {GRPO_SMALL}"
    for extra in ("--max-steps 4", "--max-steps 2", "--max-steps 4 --resume latest"):
        r = stages(rlctl, f"{base} {extra}")
        assert r.returncode == 0, r.stderr
    rows = sql(
        "SELECT r.started_at, m.step, m.value FROM metrics m JOIN runs r USING (run_id) WHERE m.name = 'entropy' ORDER BY r.started_at, m.step"
    )
    runs: dict = {}
    for row in rows:
        runs.setdefault(row["started_at"], {})[row["step"]] = row["value"]
    whole, first, resumed = (runs[k] for k in sorted(runs))
    assert sorted(first) == [1, 2] and sorted(resumed) == [3, 4]  # metrics continue at step 3
    assert {**first, **resumed} == whole  # optimizer, RNG and data position were restored
    (edge,) = sql("SELECT via FROM lineage WHERE via = 'resume'")
    assert edge == {"via": "resume"}


def _signal_after_step_3(cmd: list[str], env: dict, cwd: Path, sql, metric: str, sig: int) -> None:
    """Start a training command, send `sig` once `metric` reaches step 3, and check that it
    stopped the way a signal should (exit 128 + sig)."""
    import subprocess
    import time

    proc = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while not sql(f"SELECT step FROM metrics WHERE name = '{metric}' AND step >= 3 LIMIT 1"):
        assert proc.poll() is None and time.monotonic() < deadline, (
            proc.stderr.read() if proc.poll() is not None else "slow"
        )
        time.sleep(0.3)
    proc.send_signal(sig)
    assert proc.wait(timeout=120) == 128 + sig


def test_sigint_saves_a_checkpoint_that_resume_continues(
    env: dict, sql, rlctl: Runner, tiny_model: Path, tmp_path: Path
) -> None:
    import signal

    from tests.conftest import RLCTL

    (tmp_path / "p.jsonl").write_bytes(
        rlctl("data", "pull", "gsm8k", "--sample", "--limit", "16").stdout
    )
    cmd = [
        *RLCTL.split(),
        "train",
        "grpo",
        "-i",
        "p.jsonl",
        "--model",
        str(tiny_model),
        "--max-steps",
        "1000",
        "--set",
        "trainer.max_completion_length=8",
        "--set",
        "trainer.save_steps=1000",
    ]
    _signal_after_step_3(cmd, env, tmp_path, sql, "loss", signal.SIGINT)
    (run,) = sql("SELECT run_id, status FROM runs WHERE command = 'train grpo'")
    assert run["status"] == "interrupted"
    stopped = max(x["step"] for x in sql("SELECT step FROM metrics WHERE name = 'loss'"))
    r = rlctl(
        "train",
        "grpo",
        "-i",
        "p.jsonl",
        "--model",
        str(tiny_model),
        "--set",
        "trainer.max_completion_length=8",
        "--max-steps",
        str(stopped + 2),
        "--resume",
        run["run_id"],
    )
    assert r.returncode == 0, r.stderr
    steps = sql(
        f"SELECT step FROM metrics WHERE name = 'loss' AND run_id != '{run['run_id']}' ORDER BY step"
    )
    assert steps[0]["step"] > stopped - 1 and steps[-1]["step"] == stopped + 2


def test_adaptive_kl_controller_moves_beta_by_the_rule(
    rlctl: Runner, sql, tiny_model: Path
) -> None:
    """KL far above a tiny target: each step β grows by exactly (1 + 0.2 · n / horizon)."""
    r = stages(
        rlctl,
        "data pull gsm8k --sample --limit 16",
        f"train grpo --model {tiny_model} --max-steps 3 --set trainer.max_completion_length=8 --set trainer.learning_rate=0.01 --init-kl-coef 0.05 --kl-target 1e-12 --kl-horizon 40",
    )
    assert r.returncode == 0, r.stderr
    coef = [
        x["value"] for x in sql("SELECT value FROM metrics WHERE name = 'kl_coef' ORDER BY step")
    ]
    kls = [x["value"] for x in sql("SELECT value FROM metrics WHERE name = 'kl' ORDER BY step")]
    assert len(coef) == len(kls) == 3
    n = 2  # per_device_train_batch_size 2, no accumulation, one process
    beta = 0.05
    for kl, got in zip(kls, coef, strict=True):
        error = 0.2 if kl > 0 else -0.2  # clipped: KL / 1e-12 - 1 is huge (or -1 at KL 0)
        beta *= 1 + error * n / 40
        assert got == pytest.approx(beta, rel=1e-9)


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (["--vllm-mode", "server"], "--vllm-mode server needs --vllm-endpoint latest or"),
        (
            ["--vllm-mode", "server", "--vllm-server-url", "http://127.0.0.1:9"],
            "vLLM server http://127.0.0.1:9: nothing answers there",
        ),
        (
            ["--vllm-mode", "server", "--vllm-endpoint", "latest"],
            "no running 'serve vllm' endpoint",
        ),
        (["--vllm-mode", "colocate"], "--vllm-mode colocate needs vllm in the training env"),
    ],
)
def test_vllm_modes_fail_before_the_model(rlctl: Runner, args: list[str], msg: str) -> None:
    r = stages(
        rlctl,
        "data pull gsm8k --sample --limit 4",
        "train grpo --model ./missing " + " ".join(args),
    )
    assert r.returncode == 2, r.stderr.decode()
    assert msg in r.stderr.decode().strip().splitlines()[-1]


def test_vllm_server_mode_on_a_cpu_fails_before_the_model(rlctl: Runner) -> None:
    """A server answers, but this trainer has no GPU for TRL's NCCL weight transfer."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as srv:
        url = f"http://127.0.0.1:{srv.getsockname()[1]}"
        r = stages(
            rlctl,
            "data pull gsm8k --sample --limit 4",
            f"train grpo --model ./missing --vllm-mode server --vllm-server-url {url}",
        )
    assert r.returncode == 2, r.stderr.decode()
    assert "--vllm-mode server needs a CUDA GPU" in r.stderr.decode().strip().splitlines()[-1]


def test_vllm_server_mode_reaches_grpo_config(tmp_path: Path) -> None:
    """The flags become TRL's own GRPOConfig keys (a live socket stands in for the server's
    port: what is checked is that rlctl finds it and passes its URL on)."""
    import socket

    from rlctl.train.config import trl_config
    from rlctl.train.grpo import vllm_section

    with socket.create_server(("127.0.0.1", 0)) as srv:
        url = f"http://127.0.0.1:{srv.getsockname()[1]}/"
        section = vllm_section({"vllm_mode": "server", "vllm_server_url": url})
    args = trl_config("grpo", section, tmp_path)
    assert (args.use_vllm, args.vllm_mode, args.vllm_server_base_url) == (
        True,
        "server",
        url.rstrip("/"),
    )


def test_sft_on_whole_conversations_trains_the_assistant_turns(
    rlctl: Runner, sql, tiny_model: Path, tmp_path: Path
) -> None:
    """`messages` ending with an assistant turn train as conversations; the tiny model has
    Qwen2.5's template, which TRL can mark, so the loss covers the assistant turns only:
    the same steps with the loss on every token give other losses."""
    pulled = jsonl(rlctl("data", "pull", "gsm8k", "--sample", "--limit", "8").stdout)
    chats = [
        {
            "id": p["id"],
            "messages": [*p["messages"], {"role": "assistant", "content": p["meta"]["solution"]}],
        }
        for p in pulled
    ]
    (tmp_path / "chats.jsonl").write_text("\n".join(json.dumps(c) for c in chats) + "\n")
    base = f"train sft -i chats.jsonl --model {tiny_model} --max-steps 2"
    r = rlctl(*base.split())
    assert r.returncode == 0, r.stderr
    r = rlctl(*base.split(), "--set", "trainer.assistant_only_loss=false")
    assert r.returncode == 0, r.stderr
    rows = sql(
        "SELECT r.started_at, m.value FROM metrics m JOIN runs r USING (run_id) "
        "WHERE m.name = 'loss' AND m.step = 1 AND r.command = 'train sft' ORDER BY 1"
    )
    assistant_only, every_token = (x["value"] for x in rows)
    assert assistant_only != pytest.approx(every_token, rel=1e-3)
    configs = sql("SELECT config FROM runs WHERE command = 'train sft' ORDER BY started_at")
    assert [c["config"]["trainer"]["assistant_only_loss"] for c in configs] == [True, False]
    (first,) = sql(
        "SELECT a.path FROM artifacts a JOIN runs r USING (run_id) WHERE a.kind = 'model' "
        "AND r.command = 'train sft' ORDER BY r.started_at LIMIT 1"
    )
    _generates(rlctl, Path(first["path"]))
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(
        json.dumps(chats[0]) + "\n" + json.dumps({**pulled[1], "completion": "42"}) + "\n"
    )
    r = rlctl("train", "sft", "-i", str(mixed), "--model", "./missing")
    assert r.returncode == 2 and "whole conversations" in r.stderr.decode(), r.stderr


def test_assistant_only_loss_follows_what_the_template_allows(
    tiny_model: Path, tmp_path: Path
) -> None:
    from rlctl.train.sft import assistant_only_loss
    from tests.tiny_models import train_tokenizer

    train_tokenizer(tmp_path / "bpe")  # a ChatML template of its own, which TRL cannot mark
    assert assistant_only_loss(str(tiny_model)) is True
    assert assistant_only_loss(str(tmp_path / "bpe")) is False


@pytest.mark.parametrize(
    ("kind", "source", "args", "metric"),
    [
        (
            "beta-dpo",
            "hh-rlhf",
            "--rho 0.5 --set trainer.max_length=1024 --set trainer.per_device_train_batch_size=4",
            "beta_dpo/beta",
        ),
        (
            "grpo",
            "gsm8k",
            "--init-kl-coef 0.05 --kl-target 1e-12 --kl-horizon 40 "
            "--set trainer.max_completion_length=8 --set trainer.learning_rate=0.01",
            "kl_coef",
        ),
    ],
)
def test_resumed_run_continues_the_beta_trajectory(
    rlctl: Runner, sql, store: Path, tiny_model: Path, tmp_path: Path, kind, source, args, metric
) -> None:
    """β-DPO's running M0/σ (and its sampler) and GRPO's adaptive-KL β are in the checkpoint:
    a run preempted after its step-2 save, resumed, reaches the uninterrupted run's β."""
    import shutil

    (tmp_path / "in.jsonl").write_bytes(
        rlctl("data", "pull", source, "--sample", "--limit", "8").stdout
    )
    base = f"train {kind} -i in.jsonl --model {tiny_model} --max-steps 4 --set trainer.save_steps=2 {args}"
    assert (r := stages(rlctl, base)).returncode == 0, r.stderr
    (whole,) = sql(f"SELECT run_id FROM runs WHERE command = 'train {kind}'")
    trainer_dir = store / "artifacts" / whole["run_id"] / "trainer"
    assert (trainer_dir / "checkpoint-2" / "rlctl_state.json").exists()
    shutil.rmtree(trainer_dir / "checkpoint-4")  # as if preempted after the step-2 save
    assert (r := stages(rlctl, f"{base} --resume {whole['run_id']}")).returncode == 0, r.stderr
    rows = sql(
        f"SELECT run_id, step, value FROM metrics WHERE name = '{metric}' ORDER BY run_id, step"
    )
    first = {x["step"]: x["value"] for x in rows if x["run_id"] == whole["run_id"]}
    resumed = {x["step"]: x["value"] for x in rows if x["run_id"] != whole["run_id"]}
    assert sorted(first) == [1, 2, 3, 4] and sorted(resumed) == [3, 4]
    assert resumed == pytest.approx({3: first[3], 4: first[4]}, rel=1e-9)


def test_sft_counts_rows_trl_drops_and_stops_when_too_many(
    rlctl: Runner, sql, tiny_model: Path, tmp_path: Path
) -> None:
    """TRL drops every row whose prompt fills max_length, silently, and crashes with
    `num_samples=0` when none is left: rlctl counts, records, and stops with exit 2."""
    (tmp_path / "p.jsonl").write_bytes(
        rlctl("data", "pull", "gsm8k", "--sample", "--limit", "6").stdout
    )
    sft = f"train sft -i p.jsonl --model {tiny_model} --target meta.solution --max-steps 1"
    none = stages(rlctl, f"{sft} --set trainer.max_length=4")
    assert none.returncode == 2, none.stderr
    assert "all 6 rows were dropped" in none.stderr.decode() and b"Traceback" not in none.stderr
    many = stages(rlctl, f"{sft} --set trainer.max_length=140")
    err = many.stderr.decode()
    assert many.returncode == 2 and "would be dropped" in err and "--max-dropped" in err, err
    ok = stages(rlctl, f"{sft} --set trainer.max_length=140 --max-dropped 1")
    assert ok.returncode == 0, ok.stderr
    assert "rows dropped (the prompt alone fills trainer.max_length=140)" in ok.stderr.decode()
    (run,) = sql("SELECT run_id, run_dir FROM runs WHERE command = 'train sft' AND status = 'ok'")
    data = json.loads((Path(run["run_dir"]) / "run.json").read_text())["data"]
    assert data["rows_in"] == 6 and data["dropped"] == 2 and data["max_length"] == 140
    assert data["trained"] == 6 - data["dropped"]
    metrics = {
        x["name"]: x["value"]
        for x in sql(
            f"SELECT name, value FROM metrics WHERE run_id = '{run['run_id']}' "
            "AND name LIKE 'data/%'"
        )
    }
    assert (
        metrics["data/dropped"] == data["dropped"]
        and metrics["data/truncated"] == data["truncated"]
    )


def test_preempted_beta_dpo_keeps_its_margin_log_and_state(
    env: dict, sql, rlctl: Runner, store: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """SIGTERM (Slurm's time limit) mid-run: the margin log written so far is on disk, every
    step of it, and the checkpoint saved at the stop carries β-DPO's running statistics."""
    import signal

    from tests.conftest import RLCTL

    (tmp_path / "p.jsonl").write_bytes(
        rlctl("data", "pull", "hh-rlhf", "--sample", "--limit", "8").stdout
    )
    cmd = [
        *RLCTL.split(), "train", "beta-dpo", "-i", "p.jsonl", "--model", str(tiny_model),
        "--max-steps", "1000", "--set", "trainer.max_length=1024",
        "--set", "trainer.save_steps=1000",
    ]  # fmt: skip
    _signal_after_step_3(cmd, env, tmp_path, sql, "beta_dpo/m0", signal.SIGTERM)
    (run,) = sql("SELECT run_id, status FROM runs WHERE command = 'train beta-dpo'")
    assert run["status"] == "interrupted"
    m0 = {
        x["step"]: x["value"]
        for x in sql("SELECT step, value FROM metrics WHERE name = 'beta_dpo/m0'")
    }
    last = max(m0)
    (art,) = sql("SELECT path, complete FROM artifacts WHERE kind = 'margin_log'")
    assert not art["complete"] and art["path"].endswith("margins.jsonl.partial")
    rows = jsonl(Path(art["path"]).read_bytes())
    assert sorted({r["step"] for r in rows}) == list(range(1, last + 1))
    assert all(r["id"].startswith("hh-rlhf/") for r in rows)
    state = json.loads(
        (
            store / "artifacts" / run["run_id"] / "trainer" / f"checkpoint-{last}"
            / "rlctl_state.json"
        ).read_text()
    )  # fmt: skip
    assert state["beta_dpo"]["mean"] == pytest.approx(m0[last])


def test_hub_token_stays_out_of_checkpoints(
    rlctl: Runner, store: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """`trainer.hub_token` was masked in run.json but pickled into every checkpoint's
    training_args.bin; it now reaches huggingface_hub through the environment only."""
    token = "hf_" + "q" * 34
    (tmp_path / "p.jsonl").write_bytes(
        rlctl("data", "pull", "gsm8k", "--sample", "--limit", "2").stdout
    )
    r = rlctl(
        "train", "sft", "-i", "p.jsonl", "--model", str(tiny_model), "--target",
        "meta.solution", "--max-steps", "1", "--set", "trainer.save_steps=1",
        "--set", "trainer.max_length=1024", "--set", f"trainer.hub_token={token}",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    saved = list(store.rglob("training_args.bin"))
    assert saved  # the checkpoint TRL wrote
    for path in store.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path


KILL_DURING_SAVE = """
import os, signal
step = os.environ.get("RLCTL_TEST_KILL_DURING_SAVE")
if step:
    import transformers.trainer as t
    _rng = t.Trainer._save_rng_state
    def _die(self, output_dir):  # weights and optimizer are written, the trainer state not yet
        if output_dir.endswith("checkpoint-" + step):
            os.kill(os.getpid(), signal.SIGKILL)
        return _rng(self, output_dir)
    t.Trainer._save_rng_state = _die
"""


def test_kill_during_a_checkpoint_save_resumes_from_the_last_complete_one(
    rlctl: Runner, sql, env: dict, tiny_model: Path, tmp_path: Path
) -> None:
    """kill -9 while checkpoint-2 is being written (injected at TRL's save, after the weights
    and optimizer): `--resume` skips the torn checkpoint with a warning and continues from
    checkpoint-1, instead of failing on it."""
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(KILL_DURING_SAVE)
    (tmp_path / "p.jsonl").write_bytes(
        rlctl("data", "pull", "gsm8k", "--sample", "--limit", "4").stdout
    )
    base = (
        f"train sft -i p.jsonl --model {tiny_model} --target meta.solution --max-steps 3 "
        "--set trainer.save_steps=1 --set trainer.save_total_limit=5 --set trainer.max_length=1024"
    )
    hook = {"PYTHONPATH": str(tmp_path / "hook"), "RLCTL_TEST_KILL_DURING_SAVE": "2"}
    killed = rlctl(*shlex.split(base), extra_env=hook)  # a process: it is killed
    assert killed.returncode in (-9, 128 + 9), killed.stderr  # SIGKILL
    (run,) = sql("SELECT run_id, status FROM runs WHERE command = 'train sft'")
    assert run["status"] == "interrupted"  # found dead at the next sync
    trainer_dir = Path(env["RLCTL_STORE"]) / "artifacts" / run["run_id"] / "trainer"
    torn = trainer_dir / "checkpoint-2"
    assert torn.is_dir() and not (torn / "trainer_state.json").exists()
    resumed = stages(rlctl, f"{base} --resume {run['run_id']}")
    assert resumed.returncode == 0, resumed.stderr
    assert "checkpoint-2 is incomplete" in resumed.stderr.decode()
    (edge,) = sql("SELECT input FROM lineage WHERE via = 'resume'")
    assert edge["input"].endswith("checkpoint-1")
    steps = sql(
        f"SELECT step FROM metrics WHERE name = 'loss' AND run_id != '{run['run_id']}' "
        "ORDER BY step"
    )
    assert [x["step"] for x in steps] == [2, 3]


def test_grpo_mixes_math_and_ifeval_rewards_by_source(rlctl: Runner, sql, tiny_model: Path) -> None:
    """The RLVR lab's mixed run: GSM8K prompts get the math reward, IFEval prompts lm-eval's
    IFEval checkers, each only on its own records."""
    pulls = [rlctl(*f"data pull {name} --sample --limit 4".split()) for name in ("gsm8k", "ifeval")]
    assert all(p.returncode == 0 for p in pulls)
    r = rlctl(  # what `( pull gsm8k; pull ifeval ) | train grpo` reads, the trainer in the worker
        *f"train grpo --model {tiny_model} --reward gsm8k:math --reward ifeval:ifeval "
        "--max-steps 2 --set trainer.max_completion_length=16".split(),
        input=b"".join(p.stdout for p in pulls),
    )
    assert r.returncode == 0, r.stderr
    samples = sql("SELECT id, rewards FROM train_samples")
    assert {s["id"].split("/")[0] for s in samples} == {"gsm8k", "ifeval"}
    for s in samples:
        mine = "gsm8k:math" if s["id"].startswith("gsm8k/") else "ifeval:ifeval"
        other = "ifeval:ifeval" if mine == "gsm8k:math" else "gsm8k:math"
        assert s["rewards"][mine] is not None and s["rewards"][other] is None, s


def test_grpo_llm_reward_reads_its_own_section_not_the_policy_model(
    rlctl: Runner, tiny_model: Path
) -> None:
    """`--reward llm` used to take the *policy* (`--model`) as the judge model: the trainer's
    whole config went to the judges. Each judge now reads its own section."""
    from tests.chat_server import ChatServer

    with ChatServer() as server:
        r = stages(
            rlctl,
            "data pull gsm8k --sample --limit 2",
            f"train grpo --model {tiny_model} --reward llm --max-steps 1 --set trainer.max_completion_length=8 --set trainer.num_generations=2 --set trainer.per_device_train_batch_size=2 --set judge.llm.model=JUDGE-J --set judge.llm.base_url={server.url}",
        )
        models = {req["model"] for req in server.requests}
    assert r.returncode == 0, r.stderr
    assert models == {"JUDGE-J"}


def test_grpo_rm_reward_is_configured_in_its_section(
    rlctl: Runner, sql, tiny_model: Path, tmp_path: Path
) -> None:
    from tests.tiny_models import tiny_reward_model

    rm = tiny_reward_model(tmp_path / "rm")
    r = stages(
        rlctl,
        "data pull gsm8k --sample --limit 2",
        f"train grpo --model {tiny_model} --reward rm --max-steps 1 --set trainer.max_completion_length=8 --set trainer.num_generations=2 --set trainer.per_device_train_batch_size=2 --set judge.rm.model={rm}",
    )
    assert r.returncode == 0, r.stderr
    rewards = [s["rewards"]["rm"] for s in sql("SELECT rewards FROM train_samples")]
    assert rewards and all(isinstance(x, float) for x in rewards)
    (cfg,) = sql("SELECT config FROM runs WHERE command = 'train grpo'")
    assert cfg["config"]["judge"]["rm"]["model"] == str(rm)  # the run records what it used
    # a TRL setting given at the top level is named where it belongs
    bad = stages(
        rlctl,
        "data pull gsm8k --sample --limit 2",
        f"train grpo --model {tiny_model} --set num_generations=8",
    )
    assert bad.returncode == 2
    assert "did you mean 'trainer.num_generations'?" in bad.stderr.decode().splitlines()[-1]


def test_beta_dpo_refuses_a_loss_it_would_ignore(rlctl: Runner, tiny_model: Path) -> None:
    """β-DPO computes its own sigmoid loss and adds TRL's SFT term when asked
    (`loss_type=[sigmoid, sft]`, tested equal to TRL's in test_beta_dpo.py); any other TRL loss
    used to be accepted and silently dropped. Refused before the model loads."""
    r = stages(
        rlctl,
        "data pull hh-rlhf --sample --limit 2",
        f"train beta-dpo --model {tiny_model} --max-steps 1 --set 'trainer.loss_type=[ipo]'",
    )
    line = r.stderr.decode().strip().splitlines()[-1]
    assert r.returncode == 2 and "beta-dpo computes its own sigmoid loss" in line, line
    assert "[sigmoid, sft]" in line
    r = stages(
        rlctl,
        "data pull hh-rlhf --sample --limit 2",
        f"train beta-dpo --model {tiny_model} --max-steps 1 --set 'trainer.loss_type=[sigmoid, sft]' --set 'trainer.loss_weights=[1.0]'",
    )
    line = r.stderr.decode().strip().splitlines()[-1]
    assert r.returncode == 2 and "loss_weights" in line, line  # TRL's own check, one line


def test_held_out_set_is_evaluated_before_and_during_training(
    rlctl: Runner, sql, tiny_model: Path, tmp_path: Path
) -> None:
    """`--eval-input`: TRL evaluates the held-out pairs before the first step and every
    `--eval-every` steps; the figures are metrics of the run, the file is an input with
    `via = 'eval'`, and its rows are counted like the training rows. (The rows overlap the
    training rows here: this checks the wiring; tests/test_learning.py checks held-out gains.)"""
    held = tmp_path / "held.jsonl"
    assert (
        rlctl(shell=f"$RLCTL data pull hh-rlhf --sample --limit 3 -o {held} >/dev/null").returncode
        == 0
    )
    r = stages(
        rlctl,
        "data pull hh-rlhf --sample --limit 4",
        f"train dpo --model {tiny_model} --max-steps 2 --eval-input {held} --eval-every 1",
    )
    assert r.returncode == 0, r.stderr
    steps = sql("SELECT step FROM metrics WHERE name = 'eval_rewards/accuracies' ORDER BY step")
    assert [x["step"] for x in steps] == [0, 1, 2]
    (inp,) = sql("SELECT input FROM lineage WHERE via = 'eval'")
    assert inp["input"] == str(held)
    (cfg,) = sql("SELECT config FROM runs WHERE command = 'train dpo'")
    assert cfg["config"]["trainer"]["eval_steps"] == 1
    (run,) = sql("SELECT run_dir FROM runs WHERE command = 'train dpo'")
    info = json.loads((Path(run["run_dir"]) / "run.json").read_text())
    assert info["eval_data"]["rows_in"] == 3 and info["eval_data"]["trained"] == 3
    # GRPO: the held-out prompts' completions score `eval_reward` and stay out of the samples
    prompts = tmp_path / "held-prompts.jsonl"
    pull = f"$RLCTL data pull synth:arith --split test --limit 2 -o {prompts} >/dev/null"
    assert rlctl(shell=pull).returncode == 0
    r = stages(
        rlctl,
        "data pull gsm8k --sample --limit 4",
        f"train grpo --model {tiny_model} --max-steps 2 --eval-input {prompts} --eval-every 1 --set trainer.max_completion_length=8 --set trainer.num_generations=2 --set trainer.per_device_train_batch_size=2",
    )
    assert r.returncode == 0, r.stderr
    steps = sql("SELECT step FROM metrics WHERE name = 'eval_reward' ORDER BY step")
    assert [x["step"] for x in steps] == [0, 1, 2]
    samples = sql("SELECT step, id FROM train_samples ORDER BY step")
    assert [x["step"] for x in samples] == [1, 1, 2, 2]
    assert all(x["id"].startswith("gsm8k/") for x in samples), samples
    bad = stages(
        rlctl,
        "data pull hh-rlhf --sample --limit 4",
        f"train dpo --model {tiny_model} --eval-input -",
    )
    assert bad.returncode == 2
    assert "stdin carries the training records" in bad.stderr.decode().splitlines()[-1]


def test_system_prompt_and_chat_template_mean_what_they_mean_in_rollout(
    rlctl: Runner, sql, tiny_model: Path
) -> None:
    """`train grpo --system-prompt S` puts S into every prompt TRL samples from, as a system
    turn that the chat template renders (as `rollout --system-prompt S` does); a prompt that
    has its own system turn keeps it. `--no-chat-template` trains on the plain text, as
    `rollout --no-chat-template` samples from it. Both are recorded in the run."""
    from transformers import AutoTokenizer

    system = "Think step by step. End with #### N."
    r = stages(
        rlctl,
        "data pull gsm8k --sample --limit 2",  # no system turn of their own
        f"train grpo --model {tiny_model} --max-steps 1 --set trainer.max_completion_length=4 --set trainer.num_generations=2 --set trainer.per_device_train_batch_size=2 --system-prompt '{system}'",
    )
    assert r.returncode == 0, r.stderr
    samples = sql("SELECT prompt FROM train_samples")
    assert samples
    tok = AutoTokenizer.from_pretrained(tiny_model)
    for s in samples:
        messages = json.loads(s["prompt"])  # the view's prompt column is text: chats as JSON
        assert messages[0] == {"role": "system", "content": system}
        rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert f"<|im_start|>system\n{system}<|im_end|>" in rendered
    (cfg,) = sql("SELECT config FROM runs WHERE command = 'train grpo'")
    assert cfg["config"]["system_prompt"] == system and cfg["config"]["chat_template"] is True
    r = stages(
        rlctl,
        "data pull gsm8k --sample --limit 2",
        f"train grpo --model {tiny_model} --max-steps 1 --set trainer.max_completion_length=4 --set trainer.num_generations=2 --set trainer.per_device_train_batch_size=2 --no-chat-template",
    )
    assert r.returncode == 0, r.stderr
    texts = sql(
        "SELECT s.prompt FROM train_samples s JOIN runs r USING (run_id) "
        "WHERE r.config.chat_template = false"
    )
    questions = {r["messages"][-1]["content"] for r in jsonl(rlctl("data", "pull", "gsm8k", "--sample", "--limit", "2").stdout)}  # fmt: skip
    assert texts and {t["prompt"] for t in texts} <= questions, texts


def test_every_trainer_formats_prompts_as_rollout_does() -> None:
    """sft, dpo/β-DPO and grpo rows get the same prompt `rollout` would sample from: the
    system message where a chat has none, plain text with the chat template off (a whole
    conversation then cannot train, and says so)."""
    from rlctl.errors import BadInput
    from rlctl.train.data import PromptFormat, dpo_rows, grpo_rows, sft_rows

    rec = {"id": "a", "prompt": "2+2?", "reference": "4", "completion": "4", "chosen": "4",
           "rejected": "5"}  # fmt: skip
    chat = PromptFormat(True, "S")
    system = {"role": "system", "content": "S"}
    user = {"role": "user", "content": "2+2?"}
    for rows in (sft_rows([("f:1", rec)], "completion", chat), dpo_rows([("f:1", rec)], chat),
                 grpo_rows([("f:1", rec)], chat)):  # fmt: skip
        assert rows[0]["prompt"] == [system, user]
    text = PromptFormat(False, "S")
    assert sft_rows([("f:1", rec)], "completion", text)[0]["prompt"] == "2+2?"
    convo = {"messages": [user, {"role": "assistant", "content": "4"}]}
    assert sft_rows([("f:1", convo)], "completion", chat)[0]["messages"][0] == system
    with pytest.raises(BadInput, match="f:1: a whole conversation needs the chat template"):
        sft_rows([("f:1", convo)], "completion", text)


TEMPLATE = (
    "{% for m in messages %}[{{ m['role'] | upper }}] {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}[ASSISTANT] {% endif %}"
)


def test_a_chat_template_file_renders_rollouts_and_trains_the_policy(
    rlctl: Runner, sql, tiny_model: Path, tmp_path: Path
) -> None:
    """`--chat-template-file F`: rollout renders every chat with F (the prompt tokens it fed
    the model decode to F's rendering), `train grpo` trains with it and saves it with the
    checkpoint, both record F as an input (so `runs diff` sees an edited template); a broken
    template is one line with file and line, and an OpenAI server (which renders with its own)
    is refused with the fix."""
    from transformers import AutoTokenizer

    template = tmp_path / "brackets.jinja"
    template.write_text(TEMPLATE)
    r = stages(
        rlctl,
        "data pull gsm8k --sample --limit 2",  # no system turn of their own
        f"rollout --model {tiny_model} --max-tokens 2 --logprobs --system-prompt 'Add.' "
        f"--chat-template-file {template}",
    )
    assert r.returncode == 0, r.stderr.decode()
    tok = AutoTokenizer.from_pretrained(tiny_model)
    for rec in jsonl(r.stdout):
        fed = tok.decode(rec["prompt_token_ids"])
        assert fed.startswith("[SYSTEM] Add.\n[USER] ") and fed.endswith("[ASSISTANT] ")
    r = stages(
        rlctl,
        "data pull gsm8k --sample --limit 2",
        f"train grpo --model {tiny_model} --max-steps 1 --set trainer.max_completion_length=4 "
        "--set trainer.num_generations=2 --set trainer.per_device_train_batch_size=2 "
        f"--chat-template-file {template}",
    )
    assert r.returncode == 0, r.stderr.decode()
    (ckpt,) = sql("SELECT path FROM artifacts WHERE kind = 'model'")
    assert AutoTokenizer.from_pretrained(ckpt["path"]).chat_template == TEMPLATE
    vias = sql("SELECT r.command, l.input FROM lineage l JOIN runs r USING (run_id) "
               "WHERE l.via = 'chat_template' ORDER BY 1")  # fmt: skip
    assert [(v["command"], v["input"]) for v in vias] == [
        ("rollout", str(template)), ("train grpo", str(template)),
    ]  # fmt: skip

    template.write_text("{% for m in messages %}\n{{ m['content'] }\n{% endfor %}")
    bad = rlctl("rollout", "-i", "x.jsonl", "--model", str(tiny_model),
                "--chat-template-file", str(template))  # fmt: skip
    assert (
        bad.returncode == 2 and f"{template}:2: not a valid Jinja template" in bad.stderr.decode()
    )
    served = rlctl("rollout", "-i", "x.jsonl", "--backend", "openai", "--base-url",
                   "http://127.0.0.1:9/v1", "--model", "m", "--chat-template-file", str(template))  # fmt: skip
    assert (
        served.returncode == 2
        and "serve vllm --model M --chat-template FILE" in served.stderr.decode()
    )


def test_each_recipe_counts_the_rows_max_length_cuts() -> None:
    """What `data/truncated` counts, per trainer (each recipe's own `truncated`): an SFT row
    whose tokens reach max_length; a preference row whose prompt plus longer answer passes it
    (TRL's collator keeps the start). GRPO rows are prompts, which TRL does not cut."""
    from rlctl.train.recipe import recipe

    sft = {"input_ids": [[1] * 5, [1] * 10, [1] * 12]}
    assert recipe("sft").truncated(sft, 10) == 2
    pairs = {
        "prompt_ids": [[1] * 4, [1] * 4, [1] * 4],
        "chosen_ids": [[1] * 3, [1] * 7, [1] * 1],
        "rejected_ids": [[1] * 2, [1] * 1, [1] * 7],
    }
    for kind in ("dpo", "beta-dpo"):
        assert recipe(kind).truncated(pairs, 10) == 2
    assert recipe("grpo").truncated({"prompt": ["p"]}, 1) == 0
