"""`rlctl train sft|dpo|beta-dpo|grpo`: TRL trainers, recorded in the store."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import click

from rlctl.cli.common import (
    command_name,
    config_options,
    dry_run,
    get_store,
    input_option,
    resolve_config,
    stage_options,
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


def _common(kind: str) -> Callable[..., Any]:
    """`train KIND`'s flags (its own and the common ones, from the stage's option table),
    the input, the config file and `--set`."""
    from rlctl.stages.train import flag_options

    def deco(f: Callable[..., Any]) -> Callable[..., Any]:
        f = click.pass_context(f)
        f = config_options(f)
        f = stage_options(flag_options(kind))(f)
        return input_option(f)

    return deco


@click.group()
def train() -> None:
    """Post-train a model with TRL: sft, dpo, beta-dpo, grpo."""


def _run(ctx: click.Context, kind: str, inputs: tuple[str, ...]) -> None:
    from rlctl.stages.train import DEFAULTS, OPTIONS, check_conf, train, train_dry_run
    from rlctl.train.config import trl_keys

    conf = resolve_config(
        ctx,
        DEFAULTS,
        OPTIONS,
        open_sections=["trainer"],
        section_keys={"trainer": lambda: trl_keys(kind)},
    )
    check_conf(kind, conf)
    store = get_store(ctx)
    if dry_run(
        ctx, store, conf, DEFAULTS, lambda run: train_dry_run(store, run, kind, conf, inputs)
    ):
        return
    train(store, kind, conf, inputs, command_name(ctx))


@train.command("sft", epilog=EPILOG)
@_common("sft")
def sft(ctx: click.Context, inputs: tuple[str, ...], **_: object) -> None:
    """Supervised fine-tuning on prompt + completion (loss on the completion only)."""
    _run(ctx, "sft", inputs)


@train.command("dpo", epilog=EPILOG)
@_common("dpo")
def dpo(ctx: click.Context, inputs: tuple[str, ...], **_: object) -> None:
    """Direct preference optimisation on pair records (TRL's DPOTrainer, any loss_type)."""
    _run(ctx, "dpo", inputs)


@train.command("grpo", epilog=EPILOG)
@_common("grpo")
def grpo(ctx: click.Context, inputs: tuple[str, ...], **_: object) -> None:
    """GRPO on prompt records, rewarded by the judges of `rlctl judge` (math, format, code,
    llm, rm or module:function); the sampled completions become a `train_samples` artifact."""
    _run(ctx, "grpo", inputs)


@train.command("beta-dpo", epilog=EPILOG)
@_common("beta-dpo")
def beta_dpo(ctx: click.Context, inputs: tuple[str, ...], **_: object) -> None:
    """β-DPO (Wu et al., 2024): adaptive β and margin-based filtering; logs margin logs."""
    _run(ctx, "beta-dpo", inputs)
