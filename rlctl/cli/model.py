"""`rlctl model tiny OUT`."""

from __future__ import annotations

import logging

import click

from rlctl.cli.common import command_name, get_store
from rlctl.store import Run

log = logging.getLogger("rlctl")


@click.group()
def model() -> None:
    """Models for smoke tests."""


@model.command(
    "tiny",
    epilog="\b\nExamples:\n  rlctl model tiny ./tiny\n"
    "  rlctl model tiny ./arith --hidden-size 256 --heads 8 --no-chat-template"
    "   # learns synth:arith in a minute\n"
    "  rlctl data pull gsm8k --sample --limit 4 | rlctl rollout --model ./tiny -n 2",
)
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--seed", type=int, default=0, show_default=True, help="Weight initialisation seed.")
@click.option(
    "--layers", type=click.IntRange(min=1), default=2, show_default=True, help="Decoder layers."
)
@click.option(
    "--hidden-size",
    type=click.IntRange(min=32),
    default=128,
    show_default=True,
    help="Width (MLP: twice this).",
)
@click.option(
    "--heads",
    type=click.IntRange(min=1),
    help="Attention heads, each of hidden/heads >= 32 (vLLM's CPU kernels) [hidden/32; "
    "the 128-wide default keeps its 4 heads and 2 KV heads].",
)
@click.option(
    "--chat-template/--no-chat-template",
    default=True,
    show_default=True,
    help="Keep Qwen2.5's chat template; off: none, a base model for plain-text prompts "
    "(synth:arith), whose chat-template runs then stop with one line.",
)
@click.pass_context
def tiny(
    ctx: click.Context,
    out: str,
    seed: int,
    layers: int,
    hidden_size: int,
    heads: int | None,
    chat_template: bool,
) -> None:
    """A random-weight Qwen2 causal LM (~430k parameters at the defaults, head size 32) with
    rlctl's bundled tokenizer and Qwen2.5's chat template (none with --no-chat-template): loads
    in transformers and vLLM, downloads nothing."""
    from rlctl.models.tiny import tiny_shape
    from rlctl.stages.model import tiny_run

    shape = tiny_shape(layers, hidden_size, heads)
    heads = shape.get("num_attention_heads", heads)
    store = get_store(ctx)
    config = {
        "out": out,
        "seed": seed,
        "layers": layers,
        "hidden_size": hidden_size,
        "chat_template": chat_template,
    }
    with Run(store, command_name(ctx), config={**config, "heads": heads}, seed=seed) as run:
        summary = tiny_run(run, out, seed, chat_template, shape)
    log.info("tiny model (%d parameters) -> %s (run %s)", summary["parameters"], out, run.run_id)
