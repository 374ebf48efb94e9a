"""`rlctl rollout`: prompts in, sampled completions out."""

from __future__ import annotations

import logging

import click

from rlctl.cli.common import (
    command_name,
    config_options,
    dry_run,
    get_store,
    input_option,
    output_option,
    resolve_config,
    stage_options,
)
from rlctl.stages.rollout import OPTIONS
from rlctl.store import Run

log = logging.getLogger("rlctl")

EPILOG = """\b
Examples:
  rlctl model tiny ./tiny
  rlctl data pull gsm8k --sample --limit 8 | rlctl rollout --model ./tiny -n 2 --logprobs
  rlctl rollout -i latest:prompts --model Qwen/Qwen3-1.7B --backend vllm -n 8 --temperature 1.0
  rlctl serve vllm --model ./tiny &
  rlctl rollout -i prompts.jsonl --backend openai --endpoint latest
  rlctl rollout -i prompts.jsonl --backend openai --base-url http://node7:8000/v1 --concurrency 64
"""


@click.command(epilog=EPILOG)
@input_option
@stage_options(OPTIONS)
@output_option
@config_options
@click.pass_context
def rollout(ctx: click.Context, inputs: tuple[str, ...], output: str | None, **_: object) -> None:
    """Sample completions for prompt records: stored as rollout records, streamed when piped."""
    from rlctl.stages.rollout import DEFAULTS, check_conf, rollout_run

    conf = resolve_config(ctx, DEFAULTS, OPTIONS)
    store = get_store(ctx)
    endpoint = check_conf(store, conf)
    from rlctl.stages import dry_run as dry

    def check(run: Run) -> list[tuple[str, str]]:
        return [dry.generator(conf, endpoint), dry.records(store, run, inputs, "prompt")]

    if dry_run(ctx, store, conf, DEFAULTS, check):
        return
    with Run(store, command_name(ctx), config=conf, seed=conf["seed"]) as run:
        rollout_run(run, store, conf, inputs, endpoint, output)
