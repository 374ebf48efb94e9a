"""`rlctl rollout`: prompt records in, n rollout records per prompt out, in chunks so that
memory stays flat and the next stage starts before the last prompt is generated."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

from rlctl.backends.generation import Backend, Prompt, Sampling

DEFAULTS: dict[str, Any] = {
    "model": None,
    "backend": "hf",
    "num_samples": 1,
    "limit": None,
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": -1,
    "max_tokens": 256,
    "stop": [],
    # None: local engines seed with 0 (reproducible by default); an OpenAI server gets no
    # per-request seed unless asked, because seeded requests crash vLLM's CPU build under
    # chunked prefill ("CPU Generator does not use offset", cf. RBLN-SW/vllm-rbln#1025).
    "seed": None,
    "chat_template": True,
    "system_prompt": None,
    "logprobs": False,
    "dtype": "auto",
    "fp32_lm_head": False,
    "batch_size": 16,
    "base_url": None,
    "endpoint": None,
    "api": "chat",
    "concurrency": 16,
    "max_model_len": None,
}


def sampling_of(conf: dict[str, Any]) -> Sampling:
    return Sampling(
        n=int(conf["num_samples"]),
        temperature=float(conf["temperature"]),
        top_p=float(conf["top_p"]),
        top_k=int(conf["top_k"]),
        max_tokens=int(conf["max_tokens"]),
        stop=tuple(conf["stop"] or ()),
        seed=conf["seed"],
        logprobs=bool(conf["logprobs"]),
    )


def rollouts(
    prompts: Iterable[dict[str, Any]],
    backend: Backend,
    sampling: Sampling,
    *,
    chat_template: bool = True,
    system_prompt: str | None = None,
    chunk: int = 64,
    generator: dict[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """`generator` (what the engine really ran: dtype, head) goes into every record, so a
    rollout file read on its own still says how it was generated."""
    it = iter(prompts)
    settings = sampling.record()
    while batch := list(itertools.islice(it, chunk)):
        ps = [Prompt.of(r, chat_template, system_prompt) for r in batch]
        for rec, gens in zip(batch, backend.generate(ps, sampling), strict=True):
            base = {k: v for k, v in rec.items() if k != "run_id"}
            for k, g in enumerate(gens):
                out = {
                    **base,
                    "completion": g.text,
                    "sample": k,
                    "model": backend.model,
                    "backend": backend.name,
                    "finish_reason": g.finish_reason,
                    "sampling": settings,
                }
                if generator is not None:
                    out["generator"] = generator
                if sampling.logprobs:
                    out["prompt_token_ids"] = g.prompt_token_ids
                    out["completion_token_ids"] = g.token_ids
                    out["completion_logprobs"] = g.logprobs
                yield out
