"""`rlctl slurm` against a real Slurm: a one-node slurmctld/slurmd on 127.0.0.1 started by
scripts/slurm/local-cluster.sh (which `make test` runs; the fixture starts it when needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from rlctl.data import SAMPLES
from tests.conftest import ROOT, Runner, jsonl

SCRIPT = ROOT / "scripts" / "slurm" / "local-cluster.sh"
LOCAL = ROOT / "configs" / "slurm" / "local.yaml"
PIPELINES = ROOT / "configs" / "slurm" / "pipelines"


def test_examples_in_scripts_slurm_are_current() -> None:
    """scripts/slurm/*.sbatch are the pipelines rendered; re-run render_examples.py to update."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "render_examples", SCRIPT.with_name("render_examples.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for path, text in mod.rendered().items():
        assert path.read_text() == text, (
            f"{path.name} is stale: python scripts/slurm/render_examples.py"
        )


def test_dry_run_renders_cluster_settings_and_records_nothing(rlctl: Runner, sql) -> None:
    r = rlctl(
        "slurm", "submit", str(PIPELINES / "grpo-vllm.yaml"), "--partition", "h100",
        "--account", "lab", "--gpus-per-node", "4", "--set", "cluster.modules=[cuda/12.4]",
        "--set", "vllm_gpus=2", "--dry-run",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    script = r.stdout.decode()
    for line in ("#SBATCH --partition=h100", "#SBATCH --account=lab", "#SBATCH --gpus-per-node=4"):
        assert line in script
    assert "module load cuda/12.4" in script and "--tensor-parallel-size 2" in script
    assert "#SBATCH --exclusive" in script  # the rest of the pipeline's cluster file stays
    assert "--vllm-mode server" in script and "curl -sf http://127.0.0.1:8000/health " in script
    assert "rlctl serve vllm --weight-sync --model" in script
    assert subprocess.run(["bash", "-n"], input=r.stdout).returncode == 0  # valid bash
    assert sql("SELECT * FROM runs") == []


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("template: pipeline\nstep: [x]\n", "unknown key 'step'; did you mean 'steps'?"),
        ("template: pipelne\nsteps: [x]\n", "template 'pipelne': use one of pipeline"),
        ("template: eval-array\ntask: gsm8k\n", "template eval-array needs checkpoints"),
        (
            "steps: [x]\ncluster: {partiton: a}\n",
            "unknown key 'partiton'; did you mean 'partition'",
        ),
        (
            "steps: ['rlctl eval {{ task }}']\n",
            "a step uses 'task' is undefined; define it under vars",
        ),
    ],
)
def test_bad_pipeline_is_one_line_exit_2(
    rlctl: Runner, tmp_path: Path, text: str, msg: str
) -> None:
    p = tmp_path / "p.yaml"
    p.write_text(text)
    r = rlctl("slurm", "submit", str(p), "--dry-run")
    assert r.returncode == 2, r.stderr.decode()
    assert msg in r.stderr.decode().strip().splitlines()[-1]


# -- a real Slurm -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if not shutil.which("slurmctld") and os.geteuid() != 0:
        pytest.skip("no Slurm here and no root to install it (scripts/slurm/local-cluster.sh)")
    was_up = subprocess.run([str(SCRIPT), "status"], capture_output=True).returncode == 0
    r = subprocess.run([str(SCRIPT), "start"], capture_output=True, timeout=600)
    assert r.returncode == 0, r.stderr.decode()
    conf = subprocess.run([str(SCRIPT), "env"], capture_output=True, text=True).stdout
    yield {"SLURM_CONF": conf.strip().split("=", 1)[1]}
    if not was_up:
        subprocess.run([str(SCRIPT), "stop"], capture_output=True)


def test_a_second_checkout_on_the_same_ports_is_told_so(
    cluster: dict[str, str], tmp_path: Path
) -> None:
    """Two checkouts' local clusters on one machine share the default ports: the second used to
    start daemons that the first one's controller refused ("the node never became idle", six
    Slurm tests failing in the fresh clone of session 14). It now stops before starting
    anything, naming the port and the way out."""
    env = {**os.environ, "RLCTL_SLURM_DIR": str(tmp_path / "other-checkout" / ".slurm")}
    r = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, env=env)
    assert r.returncode == 1, r.stderr
    assert "127.0.0.1:16817 is taken" in r.stderr and "RLCTL_SLURM_CTLD_PORT" in r.stderr
    assert not list((tmp_path / "other-checkout" / ".slurm").glob("*.pid"))
    # the running cluster is untouched
    assert subprocess.run([str(SCRIPT), "status"], capture_output=True).returncode == 0


def _submit(rlctl: Runner, cluster: dict, *args: str) -> str:
    r = rlctl("slurm", "submit", *args, "--cluster", str(LOCAL), extra_env=cluster)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode().strip()


def _wait(rlctl: Runner, cluster: dict, job: str) -> dict:
    r = rlctl(
        "slurm", "status", job, "--wait", "--poll", "0.5", "--timeout", "600", "--json",
        extra_env=cluster, timeout=700,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    (row,) = jsonl(r.stdout)
    return row


def _job_log(store: Path, job: str) -> str:
    logs = list((store / "slurm").glob(f"*-{job}*.out"))
    return "\n".join(p.read_text() for p in logs)


@pytest.mark.slow
def test_dpo_loop_as_one_job(
    rlctl: Runner, sql, cluster: dict, store: Path, tiny_model: Path
) -> None:
    job = _submit(
        rlctl, cluster, str(PIPELINES / "dpo-loop.yaml"),
        "--set", f"vars.model={tiny_model}",
        "--set", "vars.pull=gsm8k --sample --limit 16",
        "--set", "vars.backend=hf",
        "--set", "vars.rollout_args=-n 4 --max-tokens 16",
        "--set", "vars.judge=--judge format --format-search --format-regex '[0-9]'",
        "--set", "vars.train_args=--max-steps 2",
    )  # fmt: skip
    row = _wait(rlctl, cluster, job)
    assert row["state"] == "COMPLETED", _job_log(store, job)
    # the stages of a pipe start together, so compare them as a set
    assert sorted(row["runs"].split(", ")) == [
        "data pull ok",
        "judge ok",
        "rollout ok",
        "train dpo ok",
    ]
    made = sql(
        f"SELECT command, status, env FROM runs WHERE slurm_job = '{job}' ORDER BY started_at"
    )
    assert made[0]["command"] == "slurm submit"
    assert all(m["env"]["SLURM_JOB_ID"] == job for m in made[1:])
    (ckpt,) = sql(
        f"SELECT a.path FROM artifacts a JOIN runs r USING (run_id) WHERE r.slurm_job = '{job}' AND a.kind = 'model'"
    )
    assert (Path(ckpt["path"]) / "config.json").exists()
    ls = rlctl("runs", "ls", "--job", job, "--json")
    assert len(jsonl(ls.stdout)) == 5 and {x["job"] for x in jsonl(ls.stdout)} == {job}


@pytest.mark.slow
def test_eval_array_over_checkpoints(
    rlctl: Runner, sql, cluster: dict, store: Path, tiny_model: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "ckpt-2"
    shutil.copytree(tiny_model, copy)
    data = tmp_path / "gsm8k.jsonl"
    data.write_bytes(b"".join((SAMPLES / "gsm8k-test.jsonl").read_bytes().splitlines(True)[:2]))
    job = _submit(
        rlctl, cluster, str(PIPELINES / "eval-checkpoints.yaml"),
        "--set", f"checkpoints=[{tiny_model}, {copy}]",
        "--set", f"eval_args=--shots 0 --data {data} --gen-kwargs max_gen_toks=8",
    )  # fmt: skip
    row = _wait(rlctl, cluster, job)
    assert row["state"] == "COMPLETED", _job_log(store, job)
    assert row["tasks"] == f"{job}_0:COMPLETED, {job}_1:COMPLETED"
    evals = sql(
        "SELECT DISTINCT e.model, r.env->>'SLURM_ARRAY_TASK_ID' AS task FROM evals e "
        f"JOIN runs r USING (run_id) WHERE r.slurm_job = '{job}' ORDER BY task"
    )
    assert [(e["model"], e["task"]) for e in evals] == [(str(tiny_model), "0"), (str(copy), "1")]
    cmp = rlctl("eval", "compare", "--json")
    assert cmp.returncode == 0 and len(jsonl(cmp.stdout)) == 2  # strict and flexible rows


@pytest.mark.slow
def test_a_job_the_controller_refuses_is_one_line(
    rlctl: Runner, cluster: dict, tmp_path: Path
) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("steps: [hostname]\n")
    r = rlctl("slurm", "submit", str(p), "--partition", "nope", extra_env=cluster)
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert "sbatch failed:" in err and "invalid partition" in err.lower()
    assert "Traceback" not in err and r.stdout == b""


@pytest.mark.slow
def test_cancel_records_the_final_state(
    rlctl: Runner, cluster: dict, tmp_path: Path, store: Path
) -> None:
    p = tmp_path / "sleep.yaml"
    p.write_text("name: sleeper\nsteps: [sleep 300]\n")
    job = _submit(rlctl, cluster, str(p))
    deadline = time.monotonic() + 60
    while True:
        r = rlctl("slurm", "status", job, "--json", extra_env=cluster)
        (row,) = jsonl(r.stdout)
        if row["state"] == "RUNNING" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert row["state"] == "RUNNING"
    c = rlctl("slurm", "cancel", job, extra_env=cluster)
    assert c.returncode == 0, c.stderr.decode()
    assert f"job {job}: CANCELLED" in c.stderr.decode()
    run = orjson.loads(next((store / "runs").glob("*slurm-submit*/run.json")).read_bytes())
    assert run["slurm"]["state"] == "CANCELLED" and run["status"] == "ok"
    r = rlctl("slurm", "status", "--json", extra_env=cluster)
    assert [x["state"] for x in jsonl(r.stdout)] == ["CANCELLED"]


@pytest.mark.slow
@pytest.mark.parametrize("launch", ["", "srun --ntasks=1 "])
def test_graceful_cancel_checkpoints_the_training_stage(
    rlctl: Runner,
    sql,
    cluster: dict,
    store: Path,
    tiny_model: Path,
    tmp_path: Path,
    launch: str,
) -> None:
    """What the time-limit warning (--signal=B:TERM) does, sent now: the batch shell passes
    SIGTERM on, to the stage's processes or, through Slurm, to an srun step's tasks (srun
    itself would cancel its step); `train` finishes its step, saves, ends interrupted."""
    p = tmp_path / "train.yaml"
    p.write_text(
        "name: long-sft\nsteps:\n"
        f"  - rlctl data pull gsm8k --sample --limit 8 | {launch}rlctl train sft"
        f" --model {tiny_model} --target meta.solution --max-steps 100000"
        " --set trainer.save_steps=100000\n"
    )
    dry = rlctl("slurm", "submit", str(p), "--cluster", str(LOCAL), "--dry-run")
    assert "#SBATCH --signal=B:TERM@300" in dry.stdout.decode()
    job = _submit(rlctl, cluster, str(p))
    deadline = time.monotonic() + 180
    while not sql("SELECT step FROM metrics WHERE name = 'loss' AND step >= 2 LIMIT 1"):
        assert time.monotonic() < deadline, _job_log(store, job)
        time.sleep(0.5)
    c = rlctl("slurm", "cancel", job, "--graceful", extra_env=cluster, timeout=300)
    assert c.returncode == 0, c.stderr.decode() + _job_log(store, job)
    (run,) = sql("SELECT run_id, status, error FROM runs WHERE command = 'train sft'")
    assert (run["status"], run["error"]) == ("interrupted", "SIGTERM"), _job_log(store, job)
    stopped = max(x["step"] for x in sql("SELECT step FROM metrics WHERE name = 'loss'"))
    trainer = store / "artifacts" / run["run_id"] / "trainer"
    assert (trainer / f"checkpoint-{stopped}" / "optimizer.pt").exists()
    (pull,) = sql("SELECT status FROM runs WHERE command = 'data pull'")
    assert pull["status"] == "ok"  # the stage that had finished is left as it was
    r = rlctl("slurm", "status", job, "--json", extra_env=cluster)
    assert [x["state"] for x in jsonl(r.stdout)] == ["FAILED"]  # the stage's exit 143
