"""`rlctl train sft|dpo|beta-dpo|grpo`: TRL trainers, recorded in the store."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import click

from rlctl.cli.common import (
    command_name,
    config_options,
    get_store,
    input_option,
    resolve_config,
)

log = logging.getLogger("rlctl")

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
    from rlctl.stages.train import DEFAULTS, check_conf, train
    from rlctl.train.config import trl_keys

    conf = resolve_config(
        ctx, DEFAULTS, open_sections=["trainer"], section_keys={"trainer": lambda: trl_keys(kind)}
    )
    check_conf(kind, conf)
    train(get_store(ctx), kind, conf, inputs, command_name(ctx))


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
