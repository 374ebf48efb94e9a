"""GRPO wiring: reward functions from the judge registry, and the samples TRL generated
written to the store every N steps (what the model was saying at step k)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from rlctl.backends.judges import parse_spec, reward_function
from rlctl.backends.judges.base import completion_text
from rlctl.records import RecordWriter
from rlctl.train.ranks import gather_lists

log = logging.getLogger("rlctl")


class SampleLog:
    """Wraps the reward functions: the first one's call also records the prompts and
    completions; each adds its rewards; the rows of every `every`-th step are written, with
    `reward` the weighted sum TRL optimises. In a distributed job each rank scores its own
    share of the completions; the rows are gathered so rank 0 writes them all."""

    def __init__(self, writer: RecordWriter | None, every: int = 1) -> None:
        self.writer = writer  # a run artifact (published when the run ends); None off rank 0
        self.every = max(1, every)
        self.trainer: Any = None
        self._rows: list[dict[str, Any]] = []
        self.weights: dict[str, float] = {}

    def wrap(
        self, specs: list[str], options: dict[str, Any]
    ) -> tuple[list[Callable[..., Any]], list[float]]:
        funcs, weights = [], []
        for i, spec in enumerate(specs):
            name, weight = parse_spec(spec)
            fn = reward_function(name, **options)
            self.weights[name] = weight
            funcs.append(self._observe(fn, name, first=i == 0))
            weights.append(weight)
        return funcs, weights

    def _observe(self, fn: Callable[..., Any], name: str, first: bool) -> Callable[..., Any]:
        def observed(completions: list[Any], prompts: list[Any] | None = None, **kw: Any) -> list:
            rewards = fn(completions, prompts=prompts, **kw)
            step = self.trainer.state.global_step + 1 if self.trainer is not None else 0
            if step % self.every == 0 or step == 1:  # the same on every rank: TRL's step
                if first:
                    self.flush()
                    self._rows = gather_lists(
                        [
                            {"step": step, "prompt": p, "completion": completion_text(c)}
                            for p, c in zip(
                                prompts or [""] * len(completions), completions, strict=True
                            )
                        ]
                    )
                    for row in self._rows:
                        row["rewards"] = {}
                for row, r in zip(self._rows, gather_lists(list(rewards)), strict=False):
                    row["rewards"][name] = r
            return rewards

        observed.__name__ = fn.__name__
        return observed

    def flush(self) -> None:
        """Write the rows held for the current step, with their weighted reward."""
        for row in self._rows if self.writer is not None else []:
            decided = [self.weights[k] * v for k, v in row["rewards"].items() if v is not None]
            row["reward"] = sum(decided) if decided else None
            row["id"] = f"step{row['step']}"
            self.writer.write(row)
        self._rows = []


def vllm_section(conf: dict[str, Any], store: Any = None) -> dict[str, Any]:
    """GRPOConfig's vLLM keys for `--vllm-mode`, checked before any model loads. Server mode
    needs a vLLM server that takes weight updates: `rlctl serve vllm --weight-sync` (found by
    `--vllm-endpoint`), or any such server by URL (`trl vllm-serve` starts the same). Colocate
    mode needs vLLM installed next to the trainer."""
    import importlib.util

    from rlctl.errors import BadInput
    from rlctl.net import reachable

    mode = conf["vllm_mode"]
    if mode == "colocate":
        if importlib.util.find_spec("vllm") is None:
            raise BadInput("--vllm-mode colocate needs vllm in the training environment")
        if conf.get("fp32_lm_head"):
            log.warning("--fp32-lm-head: TRL's colocated vLLM engine keeps its own head dtype")
        return {"use_vllm": True, "vllm_mode": "colocate"}
    url = (conf.get("vllm_server_url") or "").rstrip("/")
    if conf.get("vllm_endpoint"):
        from rlctl.store.refs import find_endpoint

        endpoint = find_endpoint(store, conf["vllm_endpoint"])
        if not endpoint.get("weight_sync"):
            raise BadInput(
                f"the endpoint of run {endpoint['run_id']} takes no weight updates; "
                "start it with 'rlctl serve vllm --weight-sync'"
            )
        url = endpoint["url"].removesuffix("/v1")
        if conf.get("fp32_lm_head") and not endpoint.get("fp32_lm_head"):
            log.warning("--fp32-lm-head: the server's head is not fp32 (serve --fp32-lm-head)")
    elif url and conf.get("fp32_lm_head"):
        log.warning("--fp32-lm-head: the server's own head dtype applies to generation")
    if not url:
        raise BadInput("--vllm-mode server needs --vllm-endpoint latest or --vllm-server-url URL")
    if not reachable(url):
        raise BadInput(
            f"vLLM server {url}: nothing answers there; start 'rlctl serve vllm --weight-sync' "
            "first (the grpo-vllm Slurm template does, with a health wait)"
        )
    return {"use_vllm": True, "vllm_mode": "server", "vllm_server_base_url": url}


def require_gpu(mode: str) -> None:
    """Both vLLM modes move the policy's weights into vLLM every step, which only works on
    CUDA: say so before the model loads, not minutes later from inside TRL or vLLM."""
    import torch

    from rlctl.errors import BadInput

    if torch.cuda.is_available():
        return
    if mode == "server":
        raise BadInput(
            "--vllm-mode server needs a CUDA GPU on the trainer: TRL sends the weights to the "
            "server over NCCL. On a CPU, leave out --vllm-mode (transformers generates)"
        )
    raise BadInput(
        "--vllm-mode colocate needs a CUDA GPU: vLLM's CPU backend repacks its linear weights "
        "after loading, so TRL cannot update them. On a CPU, leave out --vllm-mode"
    )
