"""`llm`: an LLM judge on any OpenAI-compatible endpoint (vLLM, a hosted API, `serve vllm`).

- pointwise: a 1-10 score parsed from the reply; reward = score / 10.
- pairwise: the completion against the record's `reference` answer, asked twice with the two
  positions swapped (the HH / TL;DR win-rate protocol) so position bias cancels: win = 1.0,
  loss = 0.0, and a verdict that flips with the order is a tie, 0.5.

Replies are cached in the store (`cache/llm/`), keyed by endpoint, model, messages and sampling
settings, so re-judging costs nothing. The API key comes from $OPENAI_API_KEY and is never part
of a cache key, a verdict or run.json. 429 and 5xx are retried with exponential backoff (the
openai client's own retry, which also honours Retry-After).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rlctl.backends.judges.base import Score, completion_text
from rlctl.errors import BadInput, RlctlError
from rlctl.net import reachable
from rlctl.store.layout import atomic_write_bytes

POINTWISE_SYSTEM = (
    "You are a strict, fair grader. Judge how well the response answers the user's request: "
    "correctness first, then helpfulness and clarity. End with a line 'Rating: N' where N is "
    "an integer from 1 (useless) to 10 (perfect)."
)
PAIRWISE_SYSTEM = (
    "You compare two responses to the same request and decide which one is better: more "
    "correct, more helpful, clearer. End with a line 'Winner: A' or 'Winner: B'."
)
_RATING = re.compile(r"rating\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)", re.I)
_WINNER = re.compile(r"winner\s*[:=]?\s*\**\s*\[?([AB])\b", re.I)


def _prompt_text(rec: dict[str, Any]) -> str:
    msgs = rec.get("messages")
    if isinstance(msgs, list):
        return "\n\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in msgs)
    return str(rec.get("prompt") or "")


def parse_rating(reply: str) -> float | None:
    found = _RATING.findall(reply)
    if found:
        value = float(found[-1])
        return value if 1 <= value <= 10 else None
    tail = re.findall(r"\b(10|[1-9])\b", reply[-40:])
    return float(tail[-1]) if tail else None


def parse_winner(reply: str) -> str | None:
    found = _WINNER.findall(reply)
    return found[-1].upper() if found else None


class LLMJudge:
    def __init__(
        self,
        base_url: str | None,
        model: str | None,
        mode: str = "pointwise",
        concurrency: int = 8,
        cache_dir: str | Path | None = None,
        max_retries: int = 5,
        timeout: float = 120.0,
        max_tokens: int = 512,
    ) -> None:
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise BadInput("--judge llm needs --base-url URL (or $OPENAI_BASE_URL)")
        if not model:
            raise BadInput("--judge llm needs --model NAME (the judge model on that endpoint)")
        if mode not in ("pointwise", "pairwise"):
            raise BadInput(f"--llm-mode {mode}: use pointwise or pairwise")
        try:
            from openai import OpenAI
        except ImportError:
            raise BadInput(
                "the llm judge needs the 'openai' package: pip install 'rlctl[judges]'"
            ) from None
        self.base_url = base_url.rstrip("/")
        if not reachable(self.base_url):
            raise RlctlError(
                f"LLM judge endpoint {self.base_url} is unreachable; is the server up? "
                "(rlctl serve vllm, or fix --base-url)"
            )
        self.model = model
        self.mode = mode
        self.params = {"temperature": 0.0, "max_tokens": max_tokens}
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.client = OpenAI(
            base_url=self.base_url,
            api_key=os.environ.get("OPENAI_API_KEY") or "EMPTY",  # vLLM accepts any key
            max_retries=max_retries,
            timeout=timeout,
        )
        self.pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="rlctl-llm")
        self.name = "llm"
        self.calls = 0
        self.cache_hits = 0

    # -- one chat call, cached --------------------------------------------------------------
    def _key(self, messages: list[dict[str, str]]) -> str:
        blob = json.dumps(
            {"url": self.base_url, "model": self.model, "messages": messages, **self.params},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def chat(self, messages: list[dict[str, str]]) -> tuple[str, bool]:
        """(reply, came from the cache)."""
        key = self._key(messages)
        path = self.cache_dir / key[:2] / f"{key}.json" if self.cache_dir else None
        if path is not None and path.exists():
            self.cache_hits += 1
            return json.loads(path.read_text())["reply"], True
        import openai

        try:
            resp = self.client.chat.completions.create(
                model=self.model, messages=messages, **self.params
            )
        except openai.APIConnectionError as e:
            raise RlctlError(
                f"LLM judge endpoint {self.base_url} is unreachable ({e.__cause__ or e}); "
                "is the server up? (rlctl serve vllm, or fix --base-url)"
            ) from e
        except openai.APIStatusError as e:
            raise RlctlError(
                f"LLM judge endpoint {self.base_url} answered {e.status_code} after retries: "
                f"{str(e)[:200]}"
            ) from e
        self.calls += 1
        reply = resp.choices[0].message.content or ""
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, json.dumps({"reply": reply, "model": self.model}).encode())
        return reply, False

    # -- judging ------------------------------------------------------------------------------
    def _ask(self, system: str, user: str) -> tuple[str, bool]:
        return self.chat([{"role": "system", "content": system}, {"role": "user", "content": user}])

    def _pointwise(self, rec: dict[str, Any]) -> Score:
        response = completion_text(rec.get("completion"))
        reply, cached = self._ask(
            POINTWISE_SYSTEM, f"[Request]\n{_prompt_text(rec)}\n\n[Response]\n{response}"
        )
        rating = parse_rating(reply)
        verdict = {
            "model": self.model,
            "rating": rating,
            "rationale": reply[-1000:],
            "cached": cached,
        }
        if rating is None:
            return None, {**verdict, "reason": "no rating in the judge's reply"}
        return rating / 10.0, verdict

    def _pairwise(self, rec: dict[str, Any]) -> Score:
        ours, theirs = completion_text(rec.get("completion")), rec.get("reference")
        if not isinstance(theirs, str) or not theirs:
            return None, {"reason": "pairwise needs a reference answer to compare with"}
        winners = []
        cached_all = True
        for a, b in ((ours, theirs), (theirs, ours)):
            reply, cached = self._ask(
                PAIRWISE_SYSTEM,
                f"[Request]\n{_prompt_text(rec)}\n\n[Response A]\n{a}\n\n[Response B]\n{b}",
            )
            cached_all &= cached
            winners.append(parse_winner(reply))
        # ours was A in the first call and B in the second
        first, second = winners
        ours_won = [first == "A", second == "B"]
        ours_lost = [first == "B", second == "A"]
        if all(ours_won):
            reward, outcome = 1.0, "win"
        elif all(ours_lost):
            reward, outcome = 0.0, "loss"
        else:
            reward, outcome = 0.5, "tie"
        verdict = {
            "model": self.model,
            "outcome": outcome,
            "winners": winners,
            "cached": cached_all,
        }
        return reward, verdict

    def score(self, records: Sequence[dict[str, Any]]) -> list[Score]:
        fn = self._pointwise if self.mode == "pointwise" else self._pairwise
        return list(self.pool.map(fn, records))

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.client.close()
