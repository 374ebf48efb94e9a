"""`rlctl rollout`: prompts in, sampled completions out."""

from __future__ import annotations

import logging

import click

from rlctl.cli.common import (
    FiniteFloat,
    command_name,
    config_options,
    emit,
    endpoint_options,
    get_store,
    input_option,
    link_model,
    open_inputs,
    output_option,
    precision_options,
    progress,
    record_engine,
    resolve_config,
    resolve_endpoint,
)
from rlctl.errors import BadInput
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
    import itertools

    from rlctl.backends.generation import make_backend
    from rlctl.cli.common import guard_stdout
    from rlctl.stages.rollout import DEFAULTS, rollouts, sampling_of

    conf = resolve_config(ctx, DEFAULTS)
    store = get_store(ctx)
    endpoint = None
    if conf["backend"] == "openai":
        endpoint = resolve_endpoint(store, conf)
    elif not conf["model"]:
        raise BadInput(f"--backend {conf['backend']} needs --model PATH")
    if conf["num_samples"] < 1 or conf["max_tokens"] < 1:
        raise BadInput("-n and --max-tokens must be at least 1")
    sampling = sampling_of(conf)
    if conf["backend"] == "vllm":
        guard_stdout()
    with Run(store, command_name(ctx), config=conf, seed=conf["seed"]) as run:
        reader = open_inputs(store, run, inputs, "prompt")
        link_model(run, conf, endpoint)
        prompts = itertools.islice(reader, conf["limit"]) if conf["limit"] is not None else reader
        backend = make_backend(conf["backend"], conf, endpoint)
        try:
            run.info["config"]["model"] = backend.model
            engine = record_engine(run, backend.engine)
            records = rollouts(
                prompts,
                backend,
                sampling,
                chat_template=bool(conf["chat_template"]),
                system_prompt=conf["system_prompt"],
                chunk=max(1, int(conf["batch_size"])) * 4,
                generator=engine,
            )
            n = emit(
                run, progress(records, "generating"), "rollout", name="rollouts", output=output
            )
            run.metric("records", n)
        finally:
            backend.close()
