"""The training loop every trainer shares: load the model, let the trainer's recipe
(`train/recipe.py`) build the TRL trainer, stream metrics into the store, stop cleanly on a
signal, save the checkpoint. The job around it (rank 0 and followers, inputs, resume) is
`stages/train.py`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from rlctl.errors import BadInput, RunInterrupted
from rlctl.store import Run
from rlctl.train.config import trl_config
from rlctl.train.ranks import Job, RankView, leave
from rlctl.train.recipe import Recipe, Setup, recipe

log = logging.getLogger("rlctl")


def setup(run: Run | RankView, kind: str, conf: dict[str, Any], job: Job) -> Setup:
    """Everything that can be wrong with the config or the rewards fails here, before the
    model is loaded (on rank 0 of a distributed job, before the others are told to start)."""
    args = trl_config(kind, job.section, run.artifact_dir / "trainer")
    return Setup(args, recipe(kind).setup(run, conf, args))


def fit(run: Run | RankView, kind: str, conf: dict[str, Any], job: Job, built: Setup) -> Path:
    """Train, save the final checkpoint (an artifact of rank 0's run), return its path. The
    same loop for every trainer: its recipe builds the TRL trainer."""
    import datasets
    from datasets import Dataset

    from rlctl.backends.generation import read_chat_template
    from rlctl.backends.generation.hf import load_causal_lm
    from rlctl.logs import quiet_transformers
    from rlctl.signals import signals_trapped
    from rlctl.train.callbacks import CheckpointState, StopOnSignal, StoreMetrics
    from rlctl.train.data import prompt_format

    quiet_transformers()
    datasets.disable_progress_bars()
    out = run.artifact_dir / "checkpoint"
    args, rec = built.args, recipe(kind)
    own_head = conf["fp32_lm_head"] and rec.own_fp32_head
    # chats with the model's own template: a tokenizer without one stops before the weights load
    chats = prompt_format(conf).chat_template and not conf.get("chat_template_file")
    dtype = "float32" if args.use_cpu else "auto"
    model, tok = load_causal_lm(conf["model"], dtype, own_head, "train" if chats else None)
    run.add_model(conf["model"])
    if conf.get("chat_template_file"):  # TRL renders with the processing class's template,
        path = conf["chat_template_file"]  # which the checkpoint keeps
        tok.chat_template = read_chat_template(path)
        run.add_input(str(Path(path).absolute()), via="chat_template")
    if job.vllm_model:
        model.config._name_or_path = job.vllm_model  # what TRL's colocated vLLM loads
    rows = job.rows
    common = {
        "model": model,
        "args": args,
        "train_dataset": Dataset.from_list(rec.dataset_rows(rows)),
        "processing_class": tok,
    }
    if job.eval_rows:
        common["eval_dataset"] = Dataset.from_list(job.eval_rows)
    state = CheckpointState({})
    trainer = rec.build(common, conf, job, built, run, state)
    if rec.counts_rows:
        report_data(run, rec, len(rows), trainer.train_dataset, args, float(conf["max_dropped"]))
        if job.eval_rows:
            report_data(
                run,
                rec,
                len(job.eval_rows),
                trainer.eval_dataset,
                args,
                float(conf["max_dropped"]),
                "eval_data",
            )
    if own_head and getattr(trainer, "ref_model", None) is not None:
        from rlctl.models import enable_fp32_lm_head

        enable_fp32_lm_head(trainer.ref_model)
    trainer.add_callback(StoreMetrics(run))
    stop = StopOnSignal()
    trainer.add_callback(stop)
    trainer.add_callback(state)
    state.restore(job.resume)
    try:
        with signals_trapped(stop.on_signal):  # instead of the run's stop-at-once
            trainer.train(resume_from_checkpoint=job.resume)
    except RunInterrupted:
        # a second signal: one process saves what it has now; ranks of a distributed job
        # cannot (the others may be inside a collective), their last step-end save stands
        if args.world_size == 1:
            trainer._save_checkpoint(trainer.model, trial=None)
            state.save_to(Path(args.output_dir) / f"checkpoint-{trainer.state.global_step}")
        raise
    if stop.reason is not None:  # stopped at a step end; the trainer saved checkpoint-N
        leave()
        raise RunInterrupted(stop.reason, stop.code)
    trainer.save_model(str(out))  # every rank: FSDP and ZeRO-3 gather the shards collectively
    leave()
    if isinstance(run, Run):  # rank 0 records the run
        tok.save_pretrained(out)
        run.register_path("checkpoint", "model", out)
    return out


def report_data(
    run: Run | RankView,
    rec: Recipe,
    rows_in: int,
    dataset: Any,
    args: Any,
    max_dropped: float,
    name: str = "data",
) -> None:
    """TRL drops every example whose prompt alone fills `max_length` (SFT: whose loss tokens
    truncation removed all of), silently, and truncates others; with none left it crashes
    with `num_samples=0`. Count both from the dataset TRL will train on, record them (metrics
    `data/*`, run.json `data`; `eval_data` for the held-out set), say so on stderr, and stop
    (exit 2, on every rank alike) when nothing, or more than `max_dropped` of the rows, would
    be left out."""
    kept = len(dataset)
    dropped = rows_in - kept
    limit = getattr(args, "max_length", None)
    truncated = 0
    if limit is not None and not getattr(args, "packing", False):
        truncated = rec.truncated(dataset, limit)
    counts = {"rows_in": rows_in, "trained": kept, "dropped": dropped, "truncated": truncated}
    if isinstance(run, Run):
        for key, value in counts.items():
            run.metric(f"{name}/{key}", value)
        run.info[name] = {**counts, "max_length": limit}
        run.save()
    how = f"trainer.max_length={limit}" if limit is not None else "the model's length"
    what = "rows" if name == "data" else "held-out rows"
    if dropped or truncated:
        log.warning(
            "%s of %s %s dropped (the prompt alone fills %s), %s truncated to it",
            dropped,
            rows_in,
            what,
            how,
            truncated,
        )
    if kept == 0:
        raise BadInput(
            f"all {rows_in} {what} were dropped: every prompt fills {how}; raise "
            "trainer.max_length or shorten the prompts"
        )
    if rows_in and dropped / rows_in > max_dropped:
        raise BadInput(
            f"{dropped} of {rows_in} {what} ({dropped / rows_in:.0%}) would be dropped because "
            f"the prompt alone fills {how}; raise trainer.max_length, or pass "
            f"--max-dropped {min(1.0, round(dropped / rows_in + 0.005, 2))} to train on the rest"
        )
