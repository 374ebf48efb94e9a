"""`rlctl serve vllm`."""

from __future__ import annotations

import click

from rlctl.cli.common import command_name, get_store
from rlctl.store import Run


@click.group()
def serve() -> None:
    """Serve a model behind an OpenAI-compatible endpoint, recorded in the store."""


EPILOG = """\b
Examples:
  rlctl serve vllm --model ./tiny --dtype float32          # then, in another shell:
  rlctl rollout -i prompts.jsonl --backend openai --endpoint latest -n 4
  rlctl serve vllm --model Qwen/Qwen3-1.7B --tensor-parallel-size 2 --fp32-lm-head \
    -- --enable-prefix-caching
  CUDA_VISIBLE_DEVICES=0 rlctl serve vllm --model M --weight-sync --fp32-lm-head &
  CUDA_VISIBLE_DEVICES=1 rlctl train grpo -i latest:prompts --model M --vllm-mode server \
    --vllm-endpoint latest --fp32-lm-head

\b
Runs until SIGINT/SIGTERM, then stops vLLM and all its processes (the run ends
'interrupted': the normal end of a server). vLLM may live in another environment: --python,
$RLCTL_VLLM_PYTHON, or ./.venv-vllm (make vllm-env). Arguments after -- go to vLLM as is.
"""


@serve.command("vllm", epilog=EPILOG, context_settings={"ignore_unknown_options": True})
@click.option("--model", required=True, help="Local path or hub id.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", type=int, default=8000, show_default=True, help="Port (0: a free one).")
@click.option("--dtype", help="Weights dtype (auto, float32, bfloat16, ...).")
@click.option("--max-model-len", type=int, help="Context length to allocate.")
@click.option("--tensor-parallel-size", type=int, help="GPUs per replica.")
@click.option("--gpu-memory-utilization", type=float, help="Fraction of GPU memory for vLLM.")
@click.option("--served-model-name", help="Name clients use (default: --model).")
@click.option("--fp32-lm-head", is_flag=True, help="Compute the LM head in fp32 (head_dtype).")
@click.option(
    "--weight-sync",
    is_flag=True,
    help="Accept weight updates: the server `train grpo --vllm-mode server` generates with.",
)
@click.option("--python", "python", metavar="PATH", help="Python with vLLM installed.")
@click.option(
    "--health-timeout",
    type=float,
    default=900,
    show_default=True,
    help="Seconds to wait for /health.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Check the model, vLLM's Python and the port; print the server's command; start "
    "and record nothing.",
)
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def vllm(
    ctx: click.Context,
    extra: tuple[str, ...],
    python: str | None,
    health_timeout: float,
    dry_run: bool,
    **opts: object,
) -> None:
    """Start vLLM's OpenAI server, wait until healthy, register the endpoint, supervise it."""
    from rlctl.stages.serve import VLLMServer, free_port, vllm_python

    server = VLLMServer(python=vllm_python(python), extra=list(extra), **opts)  # type: ignore[arg-type]
    if server.port == 0:
        server.port = free_port(server.host)
    config = {**opts, "port": server.port, "python": server.python, "extra": list(extra)}
    if dry_run:
        from rlctl.stages.dry_run import report
        from rlctl.stages.serve import serve_dry_run

        report(command_name(ctx), config, config, serve_dry_run(server))
        return
    from rlctl.stages.serve import serve_run

    store = get_store(ctx)
    with Run(store, command_name(ctx), config=config) as run:
        serve_run(run, server, health_timeout)
