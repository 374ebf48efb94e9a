"""`vllm`: the in-process offline engine (`vllm.LLM`), imported only when chosen.

Logprobs are vLLM's *processed* logprobs (after temperature), the quantity a trainer
recomputes; `--fp32-lm-head` sets `hf_overrides={"head_dtype": "float32"}`.
"""

from __future__ import annotations

from typing import Any

from rlctl.backends.generation import Generation, Prompt, Sampling, engine_record, render
from rlctl.errors import BadInput


def fp32_head_overrides() -> dict[str, Any]:
    """vLLM's own switch for an fp32 LM head, or a clear error where it does not exist."""
    from vllm.config import ModelConfig

    if not hasattr(ModelConfig, "head_dtype"):
        raise BadInput("this vLLM has no head_dtype override; --fp32-lm-head needs vLLM >= 0.11")
    return {"head_dtype": "float32"}


class VLLMBackend:
    name = "vllm"
    chunk = 64  # the engine batches continuously; a chunk only bounds memory

    @classmethod
    def from_options(cls, options: dict[str, Any], endpoint: dict[str, Any] | None) -> VLLMBackend:
        return cls(
            options["model"],
            dtype=options.get("dtype") or "auto",
            seed=options.get("seed"),
            fp32_lm_head=bool(options.get("fp32_lm_head")),
            max_model_len=options.get("max_model_len"),
            enforce_eager=bool(options.get("enforce_eager")),
        )

    def __init__(
        self,
        model: str,
        dtype: str = "auto",
        seed: int | None = None,
        fp32_lm_head: bool = False,
        max_model_len: int | None = None,
        enforce_eager: bool = False,
    ) -> None:
        try:
            from vllm import LLM
        except ImportError:
            raise BadInput(
                "--backend vllm needs vLLM in this Python environment; use --backend openai "
                "with 'rlctl serve vllm' (its own environment), or run rlctl from .venv-vllm"
            ) from None
        kwargs: dict[str, Any] = {
            "model": model,
            "dtype": dtype,
            "seed": seed or 0,
            "logprobs_mode": "processed_logprobs",
        }
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        if enforce_eager:
            kwargs["enforce_eager"] = True
        if fp32_lm_head:
            kwargs["hf_overrides"] = fp32_head_overrides()
        try:
            self.llm = LLM(**kwargs)
        except (OSError, ValueError) as e:
            raise BadInput(
                f"--model {model}: vLLM cannot load it ({str(e).splitlines()[0][:200]})"
            ) from e
        self.tok = self.llm.get_tokenizer()
        self.model = model
        self.max_len = self.llm.llm_engine.model_config.max_model_len
        real = self.llm.llm_engine.model_config.dtype
        self.engine = engine_record("vllm", str(real), dtype, fp32_lm_head, model)

    def generate(self, prompts: list[Prompt], sampling: Sampling) -> list[list[Generation]]:
        from vllm import SamplingParams

        s = sampling
        greedy = s.temperature <= 0
        params = SamplingParams(
            n=1 if greedy else s.n,
            temperature=max(s.temperature, 0.0),
            top_p=s.top_p,
            top_k=s.top_k if s.top_k > 0 else -1,
            max_tokens=s.max_tokens,
            stop=list(s.stop) or None,
            seed=s.seed,
            logprobs=0 if s.logprobs else None,
        )
        ids = [
            self.tok(render(self.tok, p), add_special_tokens=False)["input_ids"] for p in prompts
        ]
        for x in ids:
            if len(x) >= self.max_len:
                raise BadInput(
                    f"a prompt is {len(x)} tokens; the context is {self.max_len}; shorten it"
                )
        outputs = self.llm.generate([{"prompt_token_ids": x} for x in ids], params, use_tqdm=False)
        result = []
        for out in outputs:
            gens = []
            for o in out.outputs:
                lps = None
                if s.logprobs and o.logprobs is not None:
                    lps = [step[t].logprob for step, t in zip(o.logprobs, o.token_ids, strict=True)]
                gens.append(
                    Generation(
                        text=o.text,
                        finish_reason=o.finish_reason,
                        prompt_token_ids=list(out.prompt_token_ids) if s.logprobs else None,
                        token_ids=list(o.token_ids) if s.logprobs else None,
                        logprobs=lps,
                    )
                )
            result.append(gens * s.n if greedy else gens)
        return result

    def close(self) -> None:
        pass
