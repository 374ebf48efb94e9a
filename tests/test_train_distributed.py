"""`rlctl train` under torchrun (what `accelerate launch` runs for DDP): two real processes on
this CPU, talking over gloo. One job is one run; rank 0 reads the inputs and writes the store."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import Runner, jsonl, stages, stored

pytestmark = pytest.mark.slow

TORCHRUN = f"{sys.executable} -m torch.distributed.run --standalone --nproc_per_node 2 -m rlctl"


def _runs(sql, command: str) -> list[dict]:
    return sql(f"SELECT run_id, status FROM runs WHERE command = '{command}' ORDER BY started_at")


def test_two_ranks_of_beta_dpo_train_as_one_process_on_their_joint_batch(
    rlctl: Runner, sql, tiny_model: Path, tmp_path: Path
) -> None:
    """2 ranks x 2 pairs against 1 process x 4 pairs, same data and seed: the same global
    batches, so the same pairs kept, the same β and the same losses (DDP averages the
    gradients; rank 0 chooses nothing the others do not)."""
    r = rlctl("data", "pull", "hh-rlhf", "--sample", "--limit", "16", "-o", "pairs.jsonl")
    assert r.returncode == 0, r.stderr
    args = (
        f"train beta-dpo -i {tmp_path / 'pairs.jsonl'} --model {tiny_model} --max-steps 3 "
        "--rho 0.5 --set trainer.max_length=512 --set trainer.learning_rate=1e-3"
    )
    two = rlctl(shell=f"{TORCHRUN} {args} --set trainer.per_device_train_batch_size=2")
    assert two.returncode == 0, two.stderr
    one = rlctl(shell=f"$RLCTL {args} --set trainer.per_device_train_batch_size=4")
    assert one.returncode == 0, one.stderr
    runs = _runs(sql, "train beta-dpo")
    assert [x["status"] for x in runs] == ["ok", "ok"]  # one run per job, not one per rank
    by_run: dict[str, dict[tuple[str, int], float]] = {x["run_id"]: {} for x in runs}
    for m in sql("SELECT run_id, name, step, value FROM metrics WHERE step IS NOT NULL"):
        by_run[m["run_id"]][(m["name"], m["step"])] = m["value"]
    ddp, single = (by_run[x["run_id"]] for x in runs)
    assert ddp.keys() == single.keys()
    for key in ("loss", "grad_norm", "beta_dpo/beta", "beta_dpo/m0", "beta_dpo/sigma"):
        for step in (1, 2, 3):
            assert ddp[(key, step)] == pytest.approx(single[(key, step)], rel=1e-4, abs=1e-6)
    assert ddp[("beta_dpo/beta", 2)] != ddp[("beta_dpo/beta", 1)]  # β moved: α is at work
    (log,) = sql(
        f"SELECT path FROM artifacts WHERE kind = 'margin_log' AND run_id = '{runs[0]['run_id']}'"
    )
    rows = stored(log["path"])
    for step in (1, 2, 3):  # every rank's pairs, once: 4 a step, 2 kept, named
        pairs = [x for x in rows if x["step"] == step]
        assert len(pairs) == 4 and sum(x["kept"] for x in pairs) == 2
        assert len({x["id"] for x in pairs}) == 4 and all(x["id"] for x in pairs)


def test_two_nodes_of_grpo_read_one_pipe_and_record_one_run(
    rlctl: Runner, sql, tiny_model: Path
) -> None:
    """Two launchers, as on two nodes (one process each, so both are local rank 0): the pipe
    feeds node 0, node 1 has no input at all, and the job is still one run."""
    from rlctl.stages.serve import free_port

    port = free_port("127.0.0.1")
    launch = (
        f"{sys.executable} -m torch.distributed.run --nnodes 2 --nproc_per_node 1 "
        f"--master_addr 127.0.0.1 --master_port {port} -m rlctl train grpo "
        f"--model {tiny_model} --reward math --reward format=0.1 --max-steps 2 "
        "--set trainer.max_completion_length=8"
    )
    r = rlctl(
        shell=f"set -o pipefail; {launch.replace(' --nnodes', ' --node_rank 1 --nnodes')} "
        f"< /dev/null > node1.log 2>&1 & $RLCTL data pull gsm8k --sample --limit 8 "
        f"| {launch.replace(' --nnodes', ' --node_rank 0 --nnodes')}; rc=$?; wait $! || rc=1; exit $rc"
    )
    assert r.returncode == 0, r.stderr
    (run,) = _runs(sql, "train grpo")
    assert run["status"] == "ok"
    steps = sql("SELECT step, count(*) AS n FROM metrics WHERE name = 'loss' GROUP BY 1 ORDER BY 1")
    assert steps == [{"step": 1, "n": 1}, {"step": 2, "n": 1}]  # rank 0 alone writes metrics
    # each rank scored its own prompt's 2 completions; rank 0 wrote both ranks' samples
    samples = sql(
        "SELECT step, count(*) AS n, count(DISTINCT prompt) AS p FROM train_samples GROUP BY 1 ORDER BY 1"
    )
    assert samples == [{"step": 1, "n": 4, "p": 2}, {"step": 2, "n": 4, "p": 2}]
    (ckpt,) = sql(f"SELECT path FROM artifacts WHERE run_id = '{run['run_id']}' AND kind = 'model'")
    gen = stages(  # the checkpoint loads and generates (in the worker: no second torch import)
        rlctl,
        "data pull gsm8k --sample --limit 2",
        f"rollout --model {ckpt['path']} --max-tokens 4",
    )
    assert gen.returncode == 0 and len(jsonl(gen.stdout)) == 2, gen.stderr
    (inputs,) = sql(
        f"SELECT count(*) AS n FROM lineage l JOIN runs p ON p.run_id = l.parent_run_id "
        f"WHERE l.run_id = '{run['run_id']}' AND p.command = 'data pull'"
    )
    assert inputs["n"] == 1  # lineage from the records rank 0 read off the pipe


def test_bad_input_on_rank_0_stops_every_rank_with_one_line(
    rlctl: Runner, sql, tiny_model: Path
) -> None:
    r = rlctl(
        shell=f"$RLCTL data pull gsm8k --sample --limit 2 "
        f"| {TORCHRUN} train dpo --model {tiny_model} --max-steps 2",
        timeout=120,  # a rank left waiting for rank 0 would hang here
    )
    assert r.returncode != 0
    errors = [x for x in r.stderr.decode().splitlines() if x.startswith("rlctl: error:")]
    assert len(errors) == 1 and "field 'chosen'" in errors[0], r.stderr
    assert [x["status"] for x in _runs(sql, "train dpo")] == ["failed"]


def test_sigint_stops_every_rank_at_a_step_end_with_one_checkpoint(
    env: dict, rlctl: Runner, sql, tiny_model: Path, tmp_path: Path
) -> None:
    """torchrun forwards SIGINT to both ranks: they finish the step, save one checkpoint
    together (each rank's RNG state in it) and stop; `--resume` under torchrun continues."""
    import signal
    import subprocess
    import time

    r = rlctl("data", "pull", "gsm8k", "--sample", "--limit", "8", "-o", "p.jsonl")
    assert r.returncode == 0, r.stderr
    train = f"train sft -i p.jsonl --target meta.solution --model {tiny_model}"
    proc = subprocess.Popen(
        f"exec {TORCHRUN} {train} --max-steps 1000 --set trainer.save_steps=1000",
        shell=True,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not sql("SELECT step FROM metrics WHERE name = 'loss' AND step >= 3 LIMIT 1"):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    stderr = proc.communicate(timeout=120)[1].decode()
    (run,) = sql("SELECT run_id, status, error FROM runs WHERE command = 'train sft'")
    assert (run["status"], run["error"]) == ("interrupted", "SIGINT"), stderr
    stopped = max(x["step"] for x in sql("SELECT step FROM metrics WHERE name = 'loss'"))
    ckpt = tmp_path / "store" / "artifacts" / run["run_id"] / "trainer" / f"checkpoint-{stopped}"
    assert {"rng_state_0.pth", "rng_state_1.pth", "optimizer.pt"} <= {
        p.name for p in ckpt.iterdir()
    }
    r = rlctl(shell=f"{TORCHRUN} {train} --max-steps {stopped + 2} --resume latest")
    assert r.returncode == 0, r.stderr.decode()[-4000:]
    steps = sql(
        f"SELECT step FROM metrics WHERE name = 'loss' AND run_id != '{run['run_id']}' ORDER BY 1"
    )
    assert [x["step"] for x in steps] == [stopped + 1, stopped + 2]
