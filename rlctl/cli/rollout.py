"""`rlctl rollout`: prompts in, sampled completions out."""

from __future__ import annotations

import logging

import click

from rlctl.cli.common import (
    FiniteFloat,
    command_name,
    config_options,
    endpoint_options,
    get_store,
    input_option,
    output_option,
    precision_options,
    resolve_config,
)
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
@click.option("--model", help="Local path or hub id (openai: the served model name).")
@click.option(
    "--backend", type=click.Choice(["hf", "vllm", "openai"]), help="Generation engine [hf]."
)
@click.option("-n", "--num-samples", type=click.IntRange(min=1), help="Completions per prompt [1].")
@click.option("--limit", type=click.IntRange(min=0), help="Use only the first N prompts.")
@click.option(
    "--temperature", type=FiniteFloat(min=0), help="Sampling temperature; 0 is greedy [1.0]."
)
@click.option("--top-p", type=FiniteFloat(0, 1, min_open=True), help="Nucleus sampling [1.0].")
@click.option("--top-k", type=int, help="Top-k sampling, -1 off [-1].")
@click.option("--max-tokens", type=int, help="Tokens to generate at most [256].")
@click.option("--stop", multiple=True, help="Stop string (repeatable).")
@click.option("--seed", type=int, help="Sampling seed [hf/vllm: 0; openai: none sent].")
@click.option(
    "--chat-template/--no-chat-template",
    default=None,
    help="Render messages with the chat template [on].",
)
@click.option("--system-prompt", help="System message prepended to chats that have none.")
@click.option(
    "--logprobs", is_flag=True, default=None, help="Record token ids and sampled-token logprobs."
)
@precision_options("hf/vllm", "auto")
@click.option(
    "--batch-size", type=click.IntRange(min=1), help="hf: prompts per generate call [16]."
)
@endpoint_options
@click.option("--api", type=click.Choice(["chat", "completions"]), help="openai: which API [chat].")
@click.option("--concurrency", type=click.IntRange(min=1), help="openai: requests in flight [16].")
@click.option("--max-model-len", type=int, help="vllm: context length to allocate.")
@output_option
@config_options
@click.pass_context
def rollout(ctx: click.Context, inputs: tuple[str, ...], output: str | None, **_: object) -> None:
    """Sample completions for prompt records: stored as rollout records, streamed when piped."""
    from rlctl.stages.rollout import DEFAULTS, check_conf, rollout_run

    conf = resolve_config(ctx, DEFAULTS)
    store = get_store(ctx)
    endpoint = check_conf(store, conf)
    with Run(store, command_name(ctx), config=conf, seed=conf["seed"]) as run:
        rollout_run(run, store, conf, inputs, endpoint, output)
