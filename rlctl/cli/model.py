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
    "  rlctl data pull gsm8k --sample --limit 4 | rlctl rollout --model ./tiny -n 2",
)
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--seed", type=int, default=0, show_default=True, help="Weight initialisation seed.")
@click.option("--layers", type=int, default=2, show_default=True, help="Decoder layers.")
@click.pass_context
def tiny(ctx: click.Context, out: str, seed: int, layers: int) -> None:
    """A random-weight Qwen2 causal LM (~430k parameters, head size 32) with rlctl's bundled
    tokenizer and Qwen2.5's chat template: loads in transformers and vLLM, downloads nothing."""
    from rlctl.models import build_tiny

    store = get_store(ctx)
    with Run(
        store, command_name(ctx), config={"out": out, "seed": seed, "layers": layers}, seed=seed
    ) as run:
        summary = build_tiny(out, seed=seed, num_hidden_layers=layers)
        run.register_path("model", "model", out)
        run.info["config"]["model"] = summary
        run.metric("parameters", summary["parameters"])
    log.info("tiny model (%d parameters) -> %s (run %s)", summary["parameters"], out, run.run_id)
