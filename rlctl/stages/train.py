"""`rlctl train KIND`: one run per training job, however many processes train it.

Under `accelerate launch` or `torchrun` every process runs `rlctl train`. Rank 0 alone records
the run, reads the inputs (and the held-out set), resolves the trainer section and the
checkpoint `--resume` names, and checks everything before any model loads; it hands the other
ranks a `Job` (`train/ranks.py`) and they train into that run's folders. What differs between
trainers is their recipe (`train/recipe.py`); the loop is `train/runner.py`.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from rlctl.backends.judges.options import JUDGE_DEFAULTS, judge_section
from rlctl.errors import BadInput
from rlctl.store import Run, Store
from rlctl.store.redact import redact_value
from rlctl.train.ranks import Job, Ranks
from rlctl.train.recipe import recipe

log = logging.getLogger("rlctl")


DEFAULTS: dict[str, Any] = {
    "model": None,
    "fp32_lm_head": False,
    "max_steps": None,
    "target": "completion",
    "max_dropped": 0.1,  # sft/dpo: the fraction of rows TRL may drop (prompt fills max_length)
    "rho": 0.2,
    "alpha": 0.6,
    "stats_init": "zero",  # beta-dpo: running M0/σ from 0 (the official code) or first-batch
    "reward": ["math"],  # grpo: judge names, as for `rlctl judge`
    "log_every": 1,  # grpo: write the sampled completions every N steps
    "mode": "auto",  # grpo math reward: where the answer is
    "format_regex": None,  # grpo format reward: the shape rewarded (default: R1 think/answer)
    "format_search": False,
    "init_kl_coef": None,  # grpo: starting β of the KL term (trainer.beta)
    "kl_target": None,  # grpo: adaptive KL controller target; off when unset
    "kl_horizon": 10000,  # grpo: samples over which β reacts
    "vllm_mode": None,  # grpo, CUDA only: generate with vLLM, server or colocate
    "vllm_server_url": None,  # grpo, server mode: e.g. http://node0:8000
    "vllm_endpoint": None,  # grpo, server mode: a `serve vllm --weight-sync` run, or 'latest'
    "resume": None,  # a run id or 'latest': continue from its newest checkpoint
    "eval_input": None,  # held-out records (same kind as the input), evaluated as training goes
    "eval_every": None,  # steps between held-out evaluations (trainer.eval_steps) [max_steps/10]
    "report_to": [],  # passed to TRL too: wandb, trackio, tensorboard
    "trainer": {},  # passed through to TRL's SFTConfig / DPOConfig / GRPOConfig
    # grpo: each reward judge's own options (judge.llm.model, judge.rm.model, judge.code.timeout)
    "judge": JUDGE_DEFAULTS,
}


def check_conf(kind: str, conf: dict[str, Any]) -> None:
    """The resolved config completed and checked before anything starts: the judges'
    sections (the flat reward keys, --math-mode and format_regex, are theirs too), the model,
    `--max-steps` and `--report-to` folded into the trainer section."""
    conf["judge"] = judge_section(conf["judge"], conf, DEFAULTS)
    if not conf["model"]:
        raise BadInput(f"train {kind} needs --model")
    if conf["max_steps"] is not None:
        conf["trainer"] = {**conf["trainer"], "max_steps": int(conf["max_steps"])}
    if conf["report_to"]:
        for tracker in conf["report_to"]:
            if importlib.util.find_spec(tracker) is None:
                raise BadInput(
                    f"--report-to {tracker} needs the {tracker!r} package: pip install {tracker}"
                )
        conf["trainer"] = {**conf["trainer"], "report_to": list(conf["report_to"])}
    if conf["eval_input"] == "-":
        raise BadInput("--eval-input -: stdin carries the training records; pass a file")


def train(
    store: Store, kind: str, conf: dict[str, Any], inputs: tuple[str, ...] | list[str], command: str
) -> Path | None:
    """Run the training job: on rank 0, the recorded run (returns the checkpoint); on the
    other ranks, their part of it (returns None)."""
    from rlctl.stages.streams import guard_stdout
    from rlctl.train.runner import fit, setup

    guard_stdout()  # transformers prints its logs to stdout; ours carries records only
    ranks = Ranks.start(kind, conf["trainer"])
    if not ranks.is_main:
        _follow(store, kind, conf, ranks)
        return None
    with Run(store, command, config=conf, seed=conf["trainer"].get("seed", 0)) as run:
        try:
            rows = read_rows(run, store, kind, conf, inputs)
            eval_rows = None
            if conf["eval_input"]:
                eval_rows = read_rows(run, store, kind, conf, [conf["eval_input"]], via="eval")
            job = prepare(run, kind, conf, rows, eval_rows)
            built = setup(run, kind, conf, job)
        except BaseException as e:
            ranks.share(getattr(e, "exit_code", 1))  # the other ranks stop; this one says why
            raise
        ranks.share(job)
        out = fit(run, kind, conf, job, built)
    log.info("%s checkpoint -> %s (run %s)", kind, out, run.run_id)
    return out


def read_rows(
    run: Run,
    store: Store,
    kind: str,
    conf: dict[str, Any],
    inputs: tuple[str, ...] | list[str],
    via: str | None = None,
) -> list[dict[str, Any]]:
    """Records in (with lineage) -> the trainer's dataset rows, every one checked."""
    from rlctl.stages.streams import open_inputs

    rec = recipe(kind)
    located = open_inputs(store, run, inputs, rec.record_kind, via=via).located()
    return rec.rows(located, conf)


def _follow(store: Store, kind: str, conf: dict[str, Any], ranks: Ranks) -> None:
    """Rank k > 0 of a distributed job: train what rank 0 read, into rank 0's run."""
    from rlctl.errors import AlreadyReported
    from rlctl.store.run import signals_trapped
    from rlctl.train.ranks import RankView
    from rlctl.train.runner import fit, setup

    job = ranks.share()
    if isinstance(job, int):
        raise AlreadyReported(job)  # rank 0 failed before training and said why
    view = RankView(store, job.run_id)
    with signals_trapped():  # as a run does: every rank ends the same way on a signal
        fit(view, kind, conf, job, setup(view, kind, conf, job))


def prepare(
    run: Run,
    kind: str,
    conf: dict[str, Any],
    rows: list[dict[str, Any]],
    eval_rows: list[dict[str, Any]] | None = None,
) -> Job:
    """Rank 0's part before any model loads: the trainer section resolved (vLLM server found,
    fp32 head, β, held-out evaluation) and the checkpoint `--resume` names, both read from the
    store."""
    section = dict(conf.get("trainer") or {})
    if eval_rows:
        section |= eval_schedule(section, conf.get("eval_every"))
    rec = recipe(kind)
    section = rec.resolve(section, conf, run, rows)
    job = Job(run.run_id, rows, section, _resume_from(run, conf.get("resume")), None, eval_rows)
    rec.finish_job(job, conf, run)
    # run.json records the trainer section TRL gets (resolved vLLM keys, assistant-only loss)
    run.info["config"] = {**run.info["config"], "trainer": redact_value(section)}
    run.save()
    return job


def eval_schedule(section: dict[str, Any], every: int | None) -> dict[str, Any]:
    """TRL's evaluation settings for `--eval-input`: once before the first step (the "before"
    figure, `eval_on_start`) and every `every` steps (default: a tenth of max_steps), unless
    the trainer section sets them itself. Without a schedule TRL would take the held-out set
    and never evaluate it."""
    steps = every or section.get("eval_steps") or max(1, int(section.get("max_steps", 500)) // 10)
    return {
        "eval_strategy": section.get("eval_strategy", "steps"),
        "eval_steps": int(steps),
        "eval_on_start": section.get("eval_on_start", True),
    }


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete `checkpoint-N` TRL wrote under a run's artifacts. A process killed
    while saving leaves a torn one (weights half written, no trainer state): it is skipped,
    with a warning, for the newest one before it."""
    from rlctl.train.callbacks import checkpoint_complete

    found = sorted(
        (p for p in (run_dir / "trainer").glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
        reverse=True,
    )
    for ckpt in found:
        if checkpoint_complete(ckpt):
            return ckpt
        log.warning("%s is incomplete (the process died while saving it): skipped", ckpt.name)
    return None


def _resume_from(run: Run, ref: str | None) -> str | None:
    """`--resume RUN` (or `latest`): that run's newest checkpoint, with lineage to it."""
    if not ref:
        return None
    store = run.store
    if ref == "latest":
        ids = [
            r["run_id"]
            for r in store.iter_runs()
            if r["command"] == run.command and r["run_id"] != run.run_id
        ]
        if not ids:
            raise BadInput(f"--resume latest: no earlier '{run.command}' run in {store.root}")
        rid = ids[0]
    else:
        rid = store.match_run(ref)
    ckpt = last_checkpoint(store.artifacts_dir / rid)
    if ckpt is None:
        raise BadInput(
            f"--resume {ref}: run {rid} saved no complete checkpoint (trainer.save_steps?)"
        )
    run.add_input(str(ckpt), run_id=rid, via="resume")
    return str(ckpt)
