"""Build and run one TRL trainer from resolved rlctl config: the part of `rlctl train` that
is not command-line parsing. The `trainer` section passes through to TRL's own config class,
so every TRL knob works without rlctl re-declaring it."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlctl.errors import BadInput, RunInterrupted
from rlctl.store import Run
from rlctl.store.redact import redact_value
from rlctl.train.ranks import Job, RankView, leave

TRAINERS = ("sft", "dpo", "beta-dpo", "grpo")
log = logging.getLogger("rlctl")


def trl_config(kind: str, section: dict[str, Any], output_dir: Path) -> Any:
    """TRL's config dataclass, with CPU-safe defaults, from the `trainer:` section; an
    unknown key is one line with a "did you mean" (before any model is loaded)."""
    import warnings

    import torch
    from trl import DPOConfig, GRPOConfig, SFTConfig

    warnings.filterwarnings("ignore", category=FutureWarning)  # deprecations inside TRL itself

    cls = {"sft": SFTConfig, "grpo": GRPOConfig}.get(kind, DPOConfig)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in section:
        if key not in names:
            hint = difflib.get_close_matches(key, names, n=1)
            did = f"; did you mean 'trainer.{hint[0]}'?" if hint else ""
            raise BadInput(f"trainer.{key}: not a {cls.__name__} field{did}")
    _check_field_types(cls, section)
    section = dict(section)
    token = section.pop("hub_token", None)
    if token:
        # TRL pickles its whole config into every checkpoint (training_args.bin): the token
        # goes to huggingface_hub through the environment instead, never into a file
        os.environ["HF_TOKEN"] = str(token)
    defaults: dict[str, Any] = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 2,
        "logging_steps": 1,
        "save_strategy": "steps",  # full checkpoints (optimizer, scheduler, RNG): --resume
        "save_steps": 50,
        "save_total_limit": 2,
        "report_to": [],
        "seed": 0,
        "disable_tqdm": True,  # rlctl streams metrics to the store; `runs tail -f` follows them
    }
    if kind == "grpo":
        defaults |= {"num_generations": 2, "max_completion_length": 64, "log_completions": False}
    if not torch.cuda.is_available():
        defaults |= {"use_cpu": True, "bf16": False}  # TRL defaults to bf16, which a CPU lacks
    try:
        return cls(**(defaults | section))
    except (TypeError, ValueError) as e:
        raise BadInput(f"trainer: {str(e).splitlines()[0]}") from e


def _check_field_types(cls: type, section: dict[str, Any]) -> None:
    """TRL's config dataclasses take `learning_rate: fast` without a word and fail much later
    inside the optimizer: check plain-typed fields (numbers, booleans, strings) here."""
    import types
    import typing

    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 (an unresolvable hint in TRL: skip the check)
        return
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    for key, value in section.items():
        hint = hints.get(key)
        args = (
            typing.get_args(hint)
            if typing.get_origin(hint) in (typing.Union, types.UnionType)
            else (hint,)
        )
        simple = [a for a in args if a in names]
        if (
            value is None
            or not simple
            or len(simple) != len([a for a in args if a is not type(None)])
        ):
            continue  # None, or a type richer than plain scalars: TRL checks it
        ok = any(
            (
                isinstance(value, bool)
                if a is bool
                else isinstance(value, a) and not isinstance(value, bool)
            )
            or (a is float and isinstance(value, int) and not isinstance(value, bool))
            for a in simple
        )
        if not ok:
            want = " or ".join(names[a] for a in simple)
            raise BadInput(f"trainer.{key}: expected {want}, got {value!r:.60}")


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
    if kind == "grpo" and conf["fp32_lm_head"]:
        section["cast_lm_head_to_fp32"] = True  # TRL's own, on policy and reference
    if kind == "grpo" and conf.get("init_kl_coef") is not None:
        section["beta"] = float(conf["init_kl_coef"])
    if kind == "grpo" and conf.get("vllm_mode"):
        from rlctl.train.grpo import require_gpu, vllm_section

        section |= vllm_section(conf, run.store)
        require_gpu(conf["vllm_mode"])
    if kind == "sft" and rows and "messages" in rows[0]:
        section.setdefault("assistant_only_loss", _assistant_only_loss(conf["model"]))
    job = Job(run.run_id, rows, section, _resume_from(run, conf.get("resume")), None, eval_rows)
    if kind == "grpo" and conf.get("vllm_mode") == "colocate" and conf["fp32_lm_head"]:
        from rlctl.models.head_dtype import with_fp32_head

        # TRL's colocated engine loads `model.name_or_path` and takes no hf_overrides
        job.vllm_model = str(with_fp32_head(conf["model"], run.artifact_dir / "vllm-model"))
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


@dataclass
class Setup:
    """TRL's config and the GRPO reward functions, built on every rank."""

    args: Any
    funcs: list[Any]
    samples: Any  # grpo: the SampleLog callback that writes the sampled completions
    margins: Any = None  # beta-dpo: rank 0's margin log artifact, written as training goes


def setup(run: Run | RankView, kind: str, conf: dict[str, Any], job: Job) -> Setup:
    """Everything that can be wrong with the config or the rewards fails here, before the
    model is loaded (on rank 0 of a distributed job, before the others are told to start)."""
    args = trl_config(kind, job.section, run.artifact_dir / "trainer")
    funcs: list[Any] = []
    samples = None
    if kind == "grpo":
        from rlctl.train.callbacks import SampleLog
        from rlctl.train.grpo import reward_functions

        # the judges' own sections (resolved with the config), never the trainer's keys:
        # its `model` is the policy, not the llm judge's model
        funcs, names, args.reward_weights = reward_functions(conf["reward"], conf["judge"])
        writer = run.artifact("samples", "train_sample") if isinstance(run, Run) else None
        samples = SampleLog(writer, int(conf["log_every"]), names, args.reward_weights, run.run_id)
        if conf.get("kl_target") and not args.beta:
            raise BadInput("--kl-target needs a KL term: set --init-kl-coef (> 0)")
    if kind == "beta-dpo":
        losses = list(args.loss_type) if isinstance(args.loss_type, list) else [args.loss_type]
        if losses not in (["sigmoid"], ["sigmoid", "sft"]):
            raise BadInput(
                f"beta-dpo computes its own sigmoid loss, optionally with TRL's SFT term; "
                f"trainer.loss_type={losses} is not that: use [sigmoid] or [sigmoid, sft], or "
                "'train dpo' (which takes any TRL loss)"
            )
    margins = None
    if kind == "beta-dpo" and isinstance(run, Run):
        margins = run.artifact("margins", "margin_log")
    return Setup(args, funcs, samples, margins)


def fit(run: Run | RankView, kind: str, conf: dict[str, Any], job: Job, built: Setup) -> Path:
    """Train, save the final checkpoint (an artifact of rank 0's run), return its path."""
    import datasets
    from datasets import Dataset

    from rlctl.backends.generation.hf import load_causal_lm
    from rlctl.logs import quiet_transformers
    from rlctl.store.run import signals_trapped
    from rlctl.train.callbacks import CheckpointState, StopOnSignal, StoreMetrics

    quiet_transformers()
    datasets.disable_progress_bars()
    out = run.artifact_dir / "checkpoint"
    args, samples = built.args, built.samples
    own_head = conf["fp32_lm_head"] and kind != "grpo"  # GRPO: TRL's cast_lm_head_to_fp32
    model, tok = load_causal_lm(conf["model"], "float32" if args.use_cpu else "auto", own_head)
    run.add_model(conf["model"])
    if job.vllm_model:
        model.config._name_or_path = job.vllm_model  # what TRL's colocated vLLM loads
    rows = job.rows
    if kind == "beta-dpo":
        rows = [{**r, "pair_index": i} for i, r in enumerate(rows)]
    common = {
        "model": model,
        "args": args,
        "train_dataset": Dataset.from_list(rows),
        "processing_class": tok,
    }
    if job.eval_rows:
        common["eval_dataset"] = Dataset.from_list(job.eval_rows)
    state = CheckpointState({})
    if kind == "sft":
        from trl import SFTTrainer

        trainer = SFTTrainer(**common)
    elif kind == "dpo":
        from trl import DPOTrainer

        trainer = DPOTrainer(**common)
    elif kind == "grpo":
        from trl import GRPOTrainer

        trainer = GRPOTrainer(**common, reward_funcs=built.funcs)
        samples.trainer = trainer
        trainer.add_callback(samples)
        if conf.get("kl_target"):
            from rlctl.train.callbacks import AdaptiveKL

            kl = AdaptiveKL(trainer, run, float(conf["kl_target"]), float(conf["kl_horizon"]))
            trainer.add_callback(kl)
            state.parts["adaptive_kl"] = kl
    else:
        from rlctl.train.beta_dpo import BetaDPOLoss, make_trainer_class

        loss = BetaDPOLoss(
            beta0=args.beta,
            rho=conf["rho"],
            alpha=conf["alpha"],
            seed=args.seed,
            stats_init=conf["stats_init"],
        )
        pair_ids = [r["id"] for r in job.rows]
        trainer = make_trainer_class()(
            **common,
            beta_dpo=loss,
            margin_log=built.margins,
            pair_ids=pair_ids,
            run_id=run.run_id,
        )
        state.parts["beta_dpo"] = loss
    if kind != "grpo":
        report_data(run, kind, len(rows), trainer.train_dataset, args, float(conf["max_dropped"]))
        if job.eval_rows:
            report_data(
                run,
                kind,
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
    kind: str,
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
        if kind == "sft":
            truncated = sum(len(ids) >= limit for ids in dataset["input_ids"])
        else:  # the collator cuts prompt + completion at max_length (keep_start)
            truncated = sum(
                len(p) + max(len(c), len(r)) > limit
                for p, c, r in zip(
                    dataset["prompt_ids"],
                    dataset["chosen_ids"],
                    dataset["rejected_ids"],
                    strict=True,
                )
            )
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
            what,
            rows_in,
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


def _assistant_only_loss(model: str) -> bool:
    """Loss on the assistant turns only, when the chat template allows it: it marks them
    (`{% generation %}`), or TRL ships a training version of it (Qwen, Llama, Gemma, ...).
    Otherwise every token, and the log says so."""
    from transformers import AutoTokenizer
    from trl.chat_template_utils import get_training_chat_template

    from rlctl.models import require_model_path

    require_model_path(model)
    try:
        get_training_chat_template(AutoTokenizer.from_pretrained(model))
    except (ValueError, TypeError) as e:
        log.warning(
            "sft on whole conversations: loss on every token (%s); set "
            "trainer.assistant_only_loss after adding {%% generation %%} markers",
            str(e).split(" (")[0],
        )
        return False
    except OSError as e:
        raise BadInput(f"--model {model}: cannot load its tokenizer ({e})") from e
    return True


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
