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
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rlctl.backends.judges.options import JUDGE_DEFAULTS, MATH_MODES, judge_section
from rlctl.errors import BadInput
from rlctl.options import Option, defaults
from rlctl.store import Run, Store
from rlctl.store.redact import redact_value
from rlctl.train.beta_dpo import STATS_INIT
from rlctl.train.maxent import OBJECTIVES
from rlctl.train.ranks import Job, Ranks
from rlctl.train.recipe import recipe

log = logging.getLogger("rlctl")


# every trainer's settings; `FLAGS` says which are flags of which `train` command (all are
# valid config keys for every trainer, so one recipe file can serve several)
OPTIONS: dict[str, Option] = {
    "model": Option(None, "Base model: local path or hub id"),
    "fp32_lm_head": Option(False, "LM head in fp32 (policy and reference)", bool),
    "resume": Option(
        None, "Continue a run from its newest checkpoint ('latest' works)", metavar="RUN"
    ),
    "eval_input": Option(
        None,
        "Held-out records (as -i, not stdin), evaluated before the first step and every "
        "--eval-every steps: eval_loss, eval_rewards/accuracies, eval_reward in the metrics",
        metavar="IN",
    ),
    "eval_every": Option(
        None,
        "Evaluate the held-out set every N steps (trainer.eval_steps)",
        int,
        min=1,
        metavar="N",
        shown_default="max_steps / 10",
    ),
    "report_to": Option(
        [],
        "Also log to these trackers (the store always gets everything)",
        list,
        choices=("wandb", "trackio", "tensorboard"),
    ),
    "max_dropped": Option(
        0.1,
        "Stop when TRL would drop more of the rows than this (prompt fills trainer.max_length)",
        float,
        min=0,
        max=1,
        metavar="FRACTION",
    ),
    "max_steps": Option(None, "Optimizer steps (trainer.max_steps)", int, min=1),
    "keep_order": Option(
        None,
        "Train on the records in their input order; TRL shuffles them otherwise",
        bool,
        negatable=True,
        shown_default="on for an ordered mix (data mix --order), else off",
    ),
    # as `rollout` takes them, so a policy is trained and sampled with one prompt format
    "chat_template": Option(
        True,
        "Prompts as chat messages rendered by the chat template; off: plain text (as rollout)",
        bool,
        negatable=True,
        shown_default="on",
    ),
    "system_prompt": Option(None, "System message prepended to chats that have none (as rollout)"),
    "chat_template_file": Option(
        None,
        "Render chats with this Jinja template instead of the model's; saved with the "
        "checkpoint (as rollout)",
        metavar="FILE",
    ),
    # sft
    "target": Option(
        "completion",
        "Field that is the completion",
        shown_default="completion; e.g. meta.solution",
    ),
    # beta-dpo
    "rho": Option(
        0.2, "Fraction of pairs filtered out per batch", float, min=0, max=1, max_open=True
    ),
    "alpha": Option(0.6, "How strongly β follows the batch margin", float),
    "stats_init": Option(
        "zero",
        "Running margin mean/std start at 0 (the official code) or at the first batch's",
        choices=STATS_INIT,
    ),
    # grpo
    "reward": Option(
        ["math"],
        "Reward (repeatable); SOURCE: only for records with that source",
        list,
        metavar="[SOURCE:]NAME[=W]",
    ),
    "mode": Option(
        "auto",
        "math reward: where the answer is; answer-tag for <answer> prompts",
        choices=MATH_MODES,
        flags=("--math-mode",),
    ),
    "log_every": Option(1, "Write sampled completions every N steps", int, min=1),
    "format_regex": Option(None, "format reward: the shape rewarded", flags=()),
    "format_search": Option(False, "format reward: match anywhere", bool, flags=()),
    "init_kl_coef": Option(None, "Starting β of the KL penalty (trainer.beta)", float, min=0),
    "kl_target": Option(None, "Adaptive KL controller: the KL to hold β at", float, min=0),
    "kl_horizon": Option(
        10000, "Adaptive KL controller horizon, in samples", float, min=0, min_open=True
    ),
    "objective": Option(
        "grpo",
        "grpo: TRL's clipped policy gradient; maxent-listwise: MaxEnt-GRPO's entropy-regularised "
        "listwise target (docs/training.md)",
        choices=OBJECTIVES,
    ),
    "maxent_tau": Option(
        1.0, "maxent-listwise: τ, the weight of the entropy term", float, min=0, min_open=True
    ),
    "maxent_q_temperature": Option(
        1.0,
        "maxent-listwise: softmax temperature of the rewards' target q",
        float,
        min=0,
        min_open=True,
    ),
    "maxent_q_epsilon": Option(
        1e-6,
        "maxent-listwise: floor of q, so every completion keeps mass",
        float,
        min=0,
        min_open=True,
    ),
    "maxent_length_normalize_ref": Option(
        True,
        "maxent-listwise: divide reference log-probs by length",
        bool,
        negatable=True,
        shown_default="on",
    ),
    "vllm_mode": Option(
        None,
        "Generate with vLLM (CUDA): a 'serve vllm --weight-sync' server, or in-process",
        choices=("server", "colocate"),
    ),
    "vllm_server_url": Option(None, "server mode: the vLLM server's URL", metavar="URL"),
    "vllm_endpoint": Option(
        None,
        "server mode: a 'serve vllm --weight-sync' run of this store, or 'latest'",
        metavar="RUN",
    ),
    # passed through to TRL's SFTConfig / DPOConfig / GRPOConfig
    "trainer": Option({}, "TRL's own config", dict),
    # grpo: each reward judge's own options (judge.llm.model, judge.rm.model, judge.code.timeout)
    "judge": Option(JUDGE_DEFAULTS, "the reward judges' options", dict),
}
DEFAULTS = defaults(OPTIONS)
COMMON = (
    "model", "fp32_lm_head", "system_prompt", "chat_template", "chat_template_file", "resume",
    "eval_input",
    "eval_every", "report_to", "max_dropped", "max_steps", "keep_order",
)  # fmt: skip
GRPO_FLAGS = (
    "reward", "mode", "log_every", "init_kl_coef", "kl_target", "kl_horizon", "objective",
    "maxent_tau", "maxent_q_temperature", "maxent_q_epsilon", "maxent_length_normalize_ref",
    "vllm_mode", "vllm_server_url", "vllm_endpoint",
)  # fmt: skip
FLAGS = {
    "sft": ("target", *COMMON),
    "dpo": COMMON,
    "beta-dpo": ("rho", "alpha", "stats_init", *COMMON),
    "grpo": (*GRPO_FLAGS, *COMMON),
}


def flag_options(kind: str) -> dict[str, Option]:
    """The options `train KIND` takes as flags."""
    return {key: OPTIONS[key] for key in FLAGS[kind]}


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
    if conf["chat_template_file"]:
        from rlctl.backends.generation import read_chat_template

        if not conf["chat_template"]:
            raise BadInput("--chat-template-file and --no-chat-template exclude each other")
        read_chat_template(conf["chat_template_file"])


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


def train_dry_run(
    store: Store, run: Run, kind: str, conf: dict[str, Any], inputs: tuple[str, ...] | list[str]
) -> list[tuple[str, str]]:
    """`--dry-run`: rank 0's whole preparation (rows read and checked, the held-out set, the
    trainer section resolved, `--resume`'s checkpoint found, TRL's config built, the rewards
    set up) through a run that records nothing, stopping where the model would load. The
    trainer section TRL would get replaces the one given, so the printed config shows it."""
    from rlctl.stages import dry_run
    from rlctl.train.runner import setup

    found = [dry_run.model(str(conf["model"]))]
    rows = read_rows(run, store, kind, conf, inputs)
    found.append(("input", f"{len(rows)} {kind} rows from {', '.join(inputs) or 'stdin'}"))
    eval_rows = None
    if conf["eval_input"]:
        eval_rows = read_rows(run, store, kind, conf, [conf["eval_input"]], via="eval")
        found.append(("eval input", f"{len(eval_rows)} held-out rows from {conf['eval_input']}"))
    job = prepare(run, kind, conf, rows, eval_rows)
    if job.resume:
        found.append(("resume", job.resume))
    setup(run, kind, conf, job)
    found.append(("trainer", f"TRL's {recipe(kind).config_class().__name__} built"))
    conf["trainer"] = {k: v for k, v in job.section.items() if k != "output_dir"}
    return found


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
    ordered: list[str] = []

    def noted(pairs: Iterable[tuple[str, dict[str, Any]]]) -> Iterator[tuple[str, dict]]:
        for where, record in pairs:
            if not ordered and ((record.get("meta") or {}).get("mix") or {}).get("ordered"):
                ordered.append(where)
            yield where, record

    rows = rec.rows(noted(located), conf)
    if via is None and ordered and conf.get("keep_order") is None:
        conf["keep_order"] = run.info["config"]["keep_order"] = True
        log.info(
            "the input is an ordered mix (data mix --order/--order-by, %s): trained in its "
            "order; --no-keep-order shuffles it",
            ordered[0],
        )
    return rows


def _follow(store: Store, kind: str, conf: dict[str, Any], ranks: Ranks) -> None:
    """Rank k > 0 of a distributed job: train what rank 0 read, into rank 0's run."""
    from rlctl.errors import AlreadyReported
    from rlctl.signals import signals_trapped
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
    if conf.get("keep_order"):  # the trainer section's own keys win
        section = {**rec.in_order, **section}
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
