"""`rlctl train sft|dpo|beta-dpo|grpo`: TRL trainers, recorded in the store."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from rlctl.backends.judges.options import JUDGE_DEFAULTS, judge_section
from rlctl.cli.common import (
    command_name,
    config_options,
    get_store,
    input_option,
    resolve_config,
)
from rlctl.errors import BadInput
from rlctl.stages.streams import open_inputs
from rlctl.store import Run, Store

if TYPE_CHECKING:
    from rlctl.train.ranks import Ranks

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
EPILOG = """\b
Examples:
  rlctl train sft -i latest:prompts --model ./tiny --target meta.solution --max-steps 20
  rlctl data pull gsm8k --sample --limit 16 | rlctl rollout --model ./tiny -n 4 \\
    | rlctl judge --judge math --pairs | rlctl train dpo --model ./tiny --max-steps 2
  rlctl train beta-dpo -i pairs.jsonl --model M --set trainer.beta=0.1 --rho 0.2 --alpha 0.6
  rlctl train dpo -i pairs.jsonl -c configs/dpo/hh-rlhf.yaml --set trainer.learning_rate=5e-7
  rlctl data pull gsm8k --split train | rlctl train grpo -c configs/grpo/gsm8k.yaml --fp32-lm-head
  rlctl train grpo -i latest:prompts --model M --max-steps 200 --resume latest

\b
The `trainer` section of the config (or --set trainer.KEY=VALUE) goes to TRL's own SFTConfig,
DPOConfig or GRPOConfig unchanged. On a machine without a GPU, use_cpu=True and bf16=False are
the defaults. Metrics stream into the store; the final checkpoint is an artifact.
"""


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.pass_context(f)
    f = config_options(f)
    f = click.option(
        "--max-steps", type=click.IntRange(min=1), help="Optimizer steps (trainer.max_steps)."
    )(f)
    f = click.option(
        "--max-dropped",
        type=click.FloatRange(0, 1),
        metavar="FRACTION",
        help="Stop when TRL would drop more of the rows than this (prompt fills "
        "trainer.max_length) [0.1].",
    )(f)
    f = click.option(
        "--report-to",
        "report_to",
        multiple=True,
        type=click.Choice(["wandb", "trackio", "tensorboard"]),
        help="Also log to these trackers (the store always gets everything).",
    )(f)
    f = click.option(
        "--eval-every",
        type=click.IntRange(min=1),
        metavar="N",
        help="Evaluate the held-out set every N steps (trainer.eval_steps) [max_steps / 10].",
    )(f)
    f = click.option(
        "--eval-input",
        metavar="IN",
        help="Held-out records (as -i, not stdin), evaluated before the first step and every "
        "--eval-every steps: eval_loss, eval_rewards/accuracies, eval_reward in the metrics.",
    )(f)
    f = click.option(
        "--resume",
        metavar="RUN",
        help="Continue a run from its newest checkpoint ('latest' works).",
    )(f)
    f = click.option(
        "--fp32-lm-head", is_flag=True, default=None, help="LM head in fp32 (policy and reference)."
    )(f)
    f = click.option("--model", help="Base model: local path or hub id.")(f)
    return input_option(f)


@click.group()
def train() -> None:
    """Post-train a model with TRL: sft, dpo, beta-dpo, grpo."""


def _run(ctx: click.Context, kind: str, inputs: tuple[str, ...]) -> None:
    from rlctl.stages.streams import guard_stdout
    from rlctl.train.data import dpo_rows, grpo_rows, sft_rows
    from rlctl.train.ranks import Ranks
    from rlctl.train.runner import fit, prepare, setup

    conf = resolve_config(
        ctx, DEFAULTS, open_sections=["trainer"], section_keys={"trainer": lambda: trl_keys(kind)}
    )
    # the flat reward keys (--math-mode, format_regex) are the judges' sections' too
    conf["judge"] = judge_section(conf["judge"], conf, DEFAULTS)
    if not conf["model"]:
        raise BadInput(f"train {kind} needs --model")
    if conf["max_steps"] is not None:
        conf["trainer"] = {**conf["trainer"], "max_steps": int(conf["max_steps"])}
    if conf["report_to"]:
        import importlib.util

        for tracker in conf["report_to"]:
            if importlib.util.find_spec(tracker) is None:
                raise BadInput(
                    f"--report-to {tracker} needs the {tracker!r} package: pip install {tracker}"
                )
        conf["trainer"] = {**conf["trainer"], "report_to": list(conf["report_to"])}
    guard_stdout()  # transformers prints its logs to stdout; ours carries records only
    store = get_store(ctx)
    ranks = Ranks.start(kind, conf["trainer"])
    if not ranks.is_main:
        _follow(store, kind, conf, ranks)
        return
    with Run(store, command_name(ctx), config=conf, seed=conf["trainer"].get("seed", 0)) as run:
        try:
            record_kind = "pair" if "dpo" in kind else "prompt"

            def read(refs: tuple[str, ...], via: str | None = None) -> list[dict[str, Any]]:
                located = open_inputs(store, run, refs, record_kind, via=via).located()
                if kind == "sft":
                    return sft_rows(located, conf["target"])
                if kind == "grpo":
                    from rlctl.train.grpo import check_reward_routing

                    rows = grpo_rows(located)
                    check_reward_routing(rows, list(conf["reward"]), conf["mode"])
                    return rows
                return dpo_rows(located)

            eval_rows = None
            if conf["eval_input"]:
                if conf["eval_input"] == "-":
                    raise BadInput(
                        "--eval-input -: stdin carries the training records; pass a file"
                    )
                eval_rows = read((conf["eval_input"],), via="eval")
            job = prepare(run, kind, conf, read(inputs), eval_rows)
            built = setup(run, kind, conf, job)
        except BaseException as e:
            ranks.share(getattr(e, "exit_code", 1))  # the other ranks stop; this one says why
            raise
        ranks.share(job)
        out = fit(run, kind, conf, job, built)
    log.info("%s checkpoint -> %s (run %s)", kind, out, run.run_id)


def trl_keys(kind: str) -> list[str]:
    """The settings of TRL's config class for `kind` (imported only to name a mistyped key)."""
    import dataclasses

    from trl import DPOConfig, GRPOConfig, SFTConfig

    cls = {"sft": SFTConfig, "grpo": GRPOConfig}.get(kind, DPOConfig)
    return [f.name for f in dataclasses.fields(cls)]


def _follow(store: Store, kind: str, conf: dict[str, Any], ranks: Ranks) -> None:
    """Rank k > 0 of a distributed job: train what rank 0 read, into rank 0's run."""
    from rlctl.store.run import signals_trapped
    from rlctl.train.ranks import RankView
    from rlctl.train.runner import fit, setup

    job = ranks.share()
    if isinstance(job, int):
        raise click.exceptions.Exit(job)  # rank 0 failed before training and said why
    view = RankView(store, job.run_id)
    with signals_trapped():  # as a run does: every rank ends the same way on a signal
        fit(view, kind, conf, job, setup(view, kind, conf, job))


@train.command("sft", epilog=EPILOG)
@click.option("--target", help="Field that is the completion [completion; e.g. meta.solution].")
@_common
def sft(ctx: click.Context, inputs: tuple[str, ...], **_: object) -> None:
    """Supervised fine-tuning on prompt + completion (loss on the completion only)."""
    _run(ctx, "sft", inputs)


@train.command("dpo", epilog=EPILOG)
@_common
def dpo(ctx: click.Context, inputs: tuple[str, ...], **_: object) -> None:
    """Direct preference optimisation on pair records (TRL's DPOTrainer, any loss_type)."""
    _run(ctx, "dpo", inputs)


@train.command("grpo", epilog=EPILOG)
@click.option(
    "--reward",
    "reward",
    multiple=True,
    metavar="[SOURCE:]NAME[=W]",
    help="Reward (repeatable) [math]; SOURCE: only for records with that source.",
)
@click.option(
    "--math-mode",
    "mode",
    type=click.Choice(["auto", "strict", "answer-tag", "boxed", "flexible"]),
    help="math reward: where the answer is; answer-tag for <answer> prompts [auto].",
)
@click.option("--log-every", type=int, help="Write sampled completions every N steps [1].")
@click.option("--init-kl-coef", type=float, help="Starting β of the KL penalty (trainer.beta).")
@click.option("--kl-target", type=float, help="Adaptive KL controller: the KL to hold β at.")
@click.option(
    "--kl-horizon", type=float, help="Adaptive KL controller horizon, in samples [10000]."
)
@click.option(
    "--vllm-mode",
    type=click.Choice(["server", "colocate"]),
    help="Generate with vLLM (CUDA): a 'serve vllm --weight-sync' server, or in-process.",
)
@click.option("--vllm-server-url", metavar="URL", help="server mode: the vLLM server's URL.")
@click.option(
    "--vllm-endpoint",
    metavar="RUN",
    help="server mode: a 'serve vllm --weight-sync' run of this store, or 'latest'.",
)
@_common
def grpo(ctx: click.Context, inputs: tuple[str, ...], **_: object) -> None:
    """GRPO on prompt records, rewarded by the judges of `rlctl judge` (math, format, code,
    llm, rm or module:function); the sampled completions become a `train_samples` artifact."""
    _run(ctx, "grpo", inputs)


@train.command("beta-dpo", epilog=EPILOG)
@click.option("--rho", type=float, help="Fraction of pairs filtered out per batch [0.2].")
@click.option("--alpha", type=float, help="How strongly β follows the batch margin [0.6].")
@click.option(
    "--stats-init",
    type=click.Choice(["zero", "first-batch"]),
    help="Running margin mean/std start at 0 (the official code) or at the first batch's [zero].",
)
@_common
def beta_dpo(ctx: click.Context, inputs: tuple[str, ...], **_: object) -> None:
    """β-DPO (Wu et al., 2024): adaptive β and margin-based filtering; logs margin logs."""
    _run(ctx, "beta-dpo", inputs)
