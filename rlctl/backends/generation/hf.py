"""`hf`: transformers `generate`, batched with left padding, prompts sorted by length."""

from __future__ import annotations

from typing import Any

from rlctl.backends.generation import (
    Generation,
    Prompt,
    Sampling,
    engine_record,
    render,
    require_chat_template,
    truncate_at_stop,
)
from rlctl.errors import BadInput
from rlctl.logs import quiet_transformers
from rlctl.models.paths import require_model_path

DTYPES = ("auto", "float32", "bfloat16", "float16")


def load_causal_lm(
    path: str, dtype: str = "auto", fp32_lm_head: bool = False, to_chat: str | None = None
) -> tuple[Any, Any]:
    """(model, tokenizer), or one line saying why not. Shared by generation and
    compare-logprobs, so both sides load a checkpoint the same way. `to_chat` (what the chats
    are for: "train") checks the tokenizer has a chat template before the weights load."""
    from rlctl.net import prefer_offline_hub

    if dtype not in DTYPES:
        raise BadInput(f"--dtype {dtype}: use one of {', '.join(DTYPES)}")
    require_model_path(path)
    prefer_offline_hub()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    try:
        tok = AutoTokenizer.from_pretrained(path)
        if to_chat:
            require_chat_template(tok, None, to=to_chat)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype="auto" if dtype == "auto" else getattr(torch, dtype)
        )
    except (OSError, ValueError) as e:
        raise BadInput(f"--model {path}: cannot load it ({str(e).splitlines()[0][:200]})") from e
    if fp32_lm_head:
        from rlctl.models import enable_fp32_lm_head

        enable_fp32_lm_head(model)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    return model, tok


def context_length(model: Any) -> int:
    return int(getattr(model.config, "max_position_embeddings", 0) or 1 << 30)


class _StopOnGeneratedText:
    """Stop a sequence once its *generated* text contains a stop string. transformers' own
    `stop_strings` also matches across the prompt boundary (a prompt ending in a newline and
    a stop of two newlines stop after one token); vLLM and OpenAI look at the output only."""

    TAIL = 64  # tokens decoded per check: enough for any practical stop string

    def __init__(self, tok: Any, stop: tuple[str, ...], width: int) -> None:
        self.tok, self.stop, self.width = tok, stop, width

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        tails = input_ids[:, self.width :][:, -self.TAIL :].tolist()
        done = [
            any(s in self.tok.decode(t, skip_special_tokens=True) for s in self.stop) for t in tails
        ]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class HFBackend:
    name = "hf"

    @classmethod
    def from_options(cls, options: dict[str, Any], endpoint: dict[str, Any] | None) -> HFBackend:
        return cls(
            options["model"],
            dtype=options.get("dtype") or "auto",
            batch_size=int(options["batch_size"]),
            fp32_lm_head=bool(options.get("fp32_lm_head")),
            seed=options.get("seed"),
        )

    @property
    def model(self) -> str:  # what rollout records call the model
        return self.model_path

    def __init__(
        self,
        model: str,
        dtype: str = "auto",
        batch_size: int = 16,
        fp32_lm_head: bool = False,
        seed: int | None = None,
    ) -> None:
        import torch

        self.model_path = model
        self.lm, self.tok = load_causal_lm(model, dtype, fp32_lm_head)
        self.engine = engine_record("transformers", str(self.lm.dtype), dtype, fp32_lm_head, model)
        self.tok.padding_side = "left"
        self.batch_size = batch_size
        self.chunk = 4 * batch_size
        self.torch = torch
        self.eos_ids = self._eos_ids()
        from transformers import set_seed

        set_seed(0 if seed is None else seed)

    def _eos_ids(self) -> set[int]:
        ids = self.lm.generation_config.eos_token_id
        ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
        if self.tok.eos_token_id is not None:
            ids.add(self.tok.eos_token_id)
        return ids

    def generate(self, prompts: list[Prompt], sampling: Sampling) -> list[list[Generation]]:
        texts = [render(self.tok, p) for p in prompts]
        encoded = [self.tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        limit = context_length(self.lm)
        for ids in encoded:
            if len(ids) + 1 > limit:
                raise BadInput(
                    f"a prompt is {len(ids)} tokens; {self.model_path} has a context of "
                    f"{limit}; shorten the prompt"
                )
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        results: dict[int, list[Generation]] = {}
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            for i, gens in zip(idx, self._batch([encoded[i] for i in idx], sampling), strict=True):
                results[i] = gens
        return [results[i] for i in range(len(texts))]

    def _batch(self, batch: list[list[int]], s: Sampling) -> list[list[Generation]]:
        torch = self.torch
        enc = self.tok.pad({"input_ids": batch}, return_tensors="pt").to(self.lm.device)
        width = enc["input_ids"].shape[1]
        limit = context_length(self.lm)
        kwargs: dict[str, Any] = {
            "max_new_tokens": max(1, min(s.max_tokens, limit - width)),
            "num_return_sequences": s.n,
            "do_sample": s.temperature > 0,
            "return_dict_in_generate": True,
            "output_logits": s.logprobs,
            "pad_token_id": self.tok.pad_token_id,
            "eos_token_id": sorted(self.eos_ids),
        }
        if s.temperature > 0:
            kwargs |= {"temperature": s.temperature, "top_p": s.top_p}
            kwargs["top_k"] = s.top_k if s.top_k > 0 else None
        if s.stop:
            kwargs["stopping_criteria"] = [_StopOnGeneratedText(self.tok, s.stop, width)]
        with torch.inference_mode():
            out = self.lm.generate(**enc, **kwargs)
        new = out.sequences[:, width:].tolist()
        logprobs = None
        if s.logprobs:
            steps = torch.stack(out.logits, dim=1).float() / s.logprob_temperature
            chosen = out.sequences[:, width:].unsqueeze(-1)
            logprobs = torch.log_softmax(steps, dim=-1).gather(-1, chosen).squeeze(-1).tolist()
        gens: list[list[Generation]] = []
        for b, prompt_ids in enumerate(batch):
            row = []
            for k in range(s.n):
                j = b * s.n + k
                row.append(
                    self._one(prompt_ids, new[j], None if logprobs is None else logprobs[j], s)
                )
            gens.append(row)
        return gens

    def _one(
        self, prompt_ids: list[int], ids: list[int], lps: list[float] | None, s: Sampling
    ) -> Generation:
        end = next((i + 1 for i, t in enumerate(ids) if t in self.eos_ids), None)
        finish = "stop" if end is not None else "length"
        ids = ids[:end] if end is not None else ids
        text, stopped = truncate_at_stop(self.tok.decode(ids, skip_special_tokens=True), s.stop)
        if stopped:
            # A stop string ends the sequence and the rest is padding (which may share an id
            # with EOS): keep the shortest prefix of tokens whose text reaches the stop.
            finish = "stop"
            ids = ids[: self._tokens_to_stop(ids, s.stop)]
        return Generation(
            text=text,
            finish_reason=finish,
            prompt_token_ids=prompt_ids,
            token_ids=ids,
            logprobs=None if lps is None else lps[: len(ids)],
        )

    def _tokens_to_stop(self, ids: list[int], stop: tuple[str, ...]) -> int:
        """Binary search: 'the decoded prefix contains a stop string' only turns on once."""
        lo, hi = 1, len(ids)
        while lo < hi:
            mid = (lo + hi) // 2
            if truncate_at_stop(self.tok.decode(ids[:mid], skip_special_tokens=True), stop)[1]:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def close(self) -> None:
        pass
