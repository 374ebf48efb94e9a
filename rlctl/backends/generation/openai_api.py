"""`openai`: any OpenAI-compatible server (`rlctl serve vllm`, a vLLM cluster, a hosted API).

Requests run `concurrency` at a time; 429/5xx are retried with backoff (the client's own retry);
token ids come from vLLM's `return_token_ids` extension, logprobs from the standard field.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rlctl.backends.generation import Generation, Prompt, Sampling, engine_record
from rlctl.errors import BadInput, RlctlError
from rlctl.net import reachable


class OpenAIBackend:
    name = "openai"

    @classmethod
    def from_options(
        cls, options: dict[str, Any], endpoint: dict[str, Any] | None
    ) -> OpenAIBackend:
        return cls(
            base_url=options["base_url"],
            model=options.get("model"),
            concurrency=int(options["concurrency"]),
            api=options["api"],
            endpoint=endpoint,
        )

    def __init__(
        self,
        base_url: str,
        model: str | None,
        concurrency: int = 16,
        api: str = "chat",
        endpoint: dict[str, Any] | None = None,
    ) -> None:
        import openai

        self.base_url = base_url.rstrip("/")
        if not reachable(self.base_url):
            raise RlctlError(
                f"endpoint {self.base_url} is unreachable; is the server up? "
                "(rlctl serve vllm, or fix --base-url)"
            )
        self.client = openai.OpenAI(
            base_url=self.base_url,
            api_key=os.environ.get("OPENAI_API_KEY") or "EMPTY",
            max_retries=5,
            timeout=600,
        )
        self.api = api
        self.chunk = 4 * concurrency
        self.model = model or self._served_model()
        if endpoint is not None:  # an `rlctl serve` run recorded what its engine runs
            self.engine = engine_record(
                "vllm server",
                endpoint.get("engine_dtype"),
                endpoint.get("dtype"),
                bool(endpoint.get("fp32_lm_head")),
                endpoint.get("checkpoint"),
                endpoint_run=endpoint.get("run_id"),
                served_model=endpoint.get("model"),
            )
        else:
            self.engine = engine_record(
                "openai-compatible server",
                None,
                None,
                None,
                note="not an 'rlctl serve' endpoint: its dtype and head are unknown here",
            )
        self.pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="rlctl-openai")

    def _served_model(self) -> str:
        models = self.client.models.list().data
        if not models:
            raise RlctlError(f"{self.base_url} serves no model; pass --model")
        return models[0].id

    def generate(self, prompts: list[Prompt], sampling: Sampling) -> list[list[Generation]]:
        return list(self.pool.map(lambda p: self._one(p, sampling), prompts))

    def _one(self, prompt: Prompt, s: Sampling) -> list[Generation]:
        import openai

        greedy = s.temperature <= 0
        n = 1 if greedy else s.n  # vLLM refuses n > 1 when greedy; the samples would be equal
        extra: dict[str, Any] = {}
        if s.top_k > 0:
            extra["top_k"] = s.top_k
        if s.logprobs:
            extra["return_token_ids"] = True
        common: dict[str, Any] = {
            "model": self.model,
            "n": n,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
            "stop": list(s.stop) or None,
            "seed": s.seed,
            "extra_body": extra,
        }
        try:
            if prompt.messages is not None and self.api == "chat":
                resp = self.client.chat.completions.create(
                    messages=prompt.messages, logprobs=s.logprobs or None, **common
                )
                gens = [self._chat_choice(c, resp, s) for c in resp.choices]
            else:
                text = prompt.text if prompt.text is not None else _flatten(prompt.messages)
                resp = self.client.completions.create(
                    prompt=text, logprobs=0 if s.logprobs else None, **common
                )
                gens = [self._completion_choice(c, resp, s) for c in resp.choices]
        except openai.APIConnectionError as e:
            raise RlctlError(f"endpoint {self.base_url} is unreachable ({e.__cause__ or e})") from e
        except openai.BadRequestError as e:
            raise BadInput(f"{self.base_url} refused a request: {_message(e)}") from e
        except openai.APIStatusError as e:
            raise RlctlError(
                f"{self.base_url} answered {e.status_code} after retries: {_message(e)}"
            ) from e
        return gens * s.n if greedy else gens

    @staticmethod
    def _extra(obj: Any, key: str) -> Any:
        return (getattr(obj, "model_extra", None) or {}).get(key, getattr(obj, key, None))

    def _chat_choice(self, c: Any, resp: Any, s: Sampling) -> Generation:
        lps = None
        if s.logprobs and c.logprobs is not None and c.logprobs.content is not None:
            lps = [t.logprob for t in c.logprobs.content]
        return Generation(
            text=c.message.content or "",
            finish_reason=c.finish_reason,
            prompt_token_ids=self._extra(resp, "prompt_token_ids") if s.logprobs else None,
            token_ids=self._extra(c, "token_ids") if s.logprobs else None,
            logprobs=lps,
        )

    def _completion_choice(self, c: Any, resp: Any, s: Sampling) -> Generation:
        lps = list(c.logprobs.token_logprobs) if s.logprobs and c.logprobs is not None else None
        prompt_ids = self._extra(c, "prompt_token_ids") or self._extra(resp, "prompt_token_ids")
        return Generation(
            text=c.text,
            finish_reason=c.finish_reason,
            prompt_token_ids=prompt_ids if s.logprobs else None,
            token_ids=self._extra(c, "token_ids") if s.logprobs else None,
            logprobs=lps,
        )

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.client.close()


def _flatten(messages: list[dict[str, str]] | None) -> str:
    return "\n\n".join(m["content"] for m in messages or [])


def _message(e: Exception) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        msg = body.get("message") or (body.get("error") or {}).get("message")
        if msg:
            return str(msg).splitlines()[0][:300]
    return str(e).splitlines()[0][:300]
