"""`llm`: an LLM judge on any OpenAI-compatible endpoint (vLLM, a hosted API, `serve vllm`).

- pointwise: a 1-10 score parsed from the reply; reward = score / 10.
- pairwise: the completion against the record's `reference` answer, asked twice with the two
  positions swapped (the HH / TL;DR win-rate protocol) so position bias cancels: win = 1.0,
  loss = 0.0, and a verdict that flips with the order is a tie, 0.5.
- samples: every two samples of the same prompt against each other, both orders; a sample's
  reward is its win rate over its readable comparisons (the β-DPO labs' sample-vs-sample
  protocol, which needs no reference and feeds `--pairs` directly).

A reply with no readable verdict is a null reward, never a number: it is counted, reported
as a metric and on stderr, and a run where most verdicts are unreadable says so loudly.
The user message is a Jinja template (built-in: default, hh-helpful, hh-harmless, tldr; or a
file); its sha256 is recorded in the run.

Replies are cached in the store (`cache/llm/`), keyed by endpoint, model, messages and sampling
settings, so re-judging costs nothing. The API key comes from $OPENAI_API_KEY and is never part
of a cache key, a verdict or run.json. 429 and 5xx are retried with exponential backoff (the
openai client's own retry, which also honours Retry-After).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rlctl.backends.judges.base import Score, completion_text
from rlctl.backends.judges.llm_templates import Template, load_template
from rlctl.errors import BadInput, RlctlError
from rlctl.files import atomic_write_bytes
from rlctl.net import reachable

POINTWISE_SYSTEM = (
    "You are a strict, fair grader. Judge how well the response answers the user's request: "
    "correctness first, then helpfulness and clarity. End with a line 'Rating: N' where N is "
    "an integer from 1 (useless) to 10 (perfect)."
)
PAIRWISE_SYSTEM = (
    "You compare two responses to the same request and decide which one is better: more "
    "correct, more helpful, clearer. End with a line 'Winner: A' or 'Winner: B'."
)
MODES = ("pointwise", "pairwise", "samples")
_RATING = re.compile(r"rating\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)", re.I)
_WINNER = re.compile(r"winner\s*[:=]?\s*\**\s*\[?([AB])\b", re.I)


def _variables(rec: dict[str, Any], **responses: str) -> dict[str, Any]:
    """What a template sees (docs/judges.md lists these)."""
    reference = rec.get("reference")
    return {
        "prompt": _prompt_text(rec),
        "reference": reference if isinstance(reference, str) else None,
        "id": rec.get("id"),
        **responses,
    }


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
    @classmethod
    def from_options(cls, o: dict[str, Any]) -> LLMJudge:
        """From its `judge.llm` section (its own `model`, never the policy's)."""
        return cls(
            base_url=o["base_url"],
            model=o["model"],
            mode=o["mode"] or "pointwise",
            concurrency=int(o["concurrency"] or 8),
            cache_dir=o["cache_dir"],
            template=o["template"],
            constrain=bool(o["constrain"]),
            max_tokens=int(o["max_tokens"] or 512),
        )

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
        template: str | None = None,
        constrain: bool = False,
    ) -> None:
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise BadInput("--judge llm needs --base-url URL (or $OPENAI_BASE_URL)")
        if not model:
            raise BadInput("--judge llm needs --model NAME (the judge model on that endpoint)")
        if mode not in MODES:
            raise BadInput(f"--llm-mode {mode}: use {', '.join(MODES)}")
        wording = "pointwise" if mode == "pointwise" else "pairwise"  # samples compare pairs
        self.template: Template = load_template(template, wording)
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
        self.params: dict[str, Any] = {"temperature": 0.0, "max_tokens": max_tokens}
        if constrain:  # vLLM structured outputs: the reply is exactly one verdict line
            choice = (
                [f"Rating: {i}" for i in range(1, 11)]
                if mode == "pointwise"
                else ["Winner: A", "Winner: B"]
            )
            self.params["extra_body"] = {"structured_outputs": {"choice": choice}}
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.client = OpenAI(
            base_url=self.base_url,
            api_key=os.environ.get("OPENAI_API_KEY") or "EMPTY",  # vLLM accepts any key
            max_retries=max_retries,
            timeout=timeout,
        )
        self.pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="rlctl-llm")
        self.name = "llm"
        self.needs_groups = mode == "samples"  # every sample of a prompt in one batch
        self.calls = 0
        self.cache_hits = 0
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

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

    def _count(self, **counts: int) -> None:
        with self._lock:
            self.counts.update(counts)

    def _pointwise(self, rec: dict[str, Any]) -> Score:
        response = completion_text(rec.get("completion"))
        user = self.template.render(_variables(rec, response=response))
        reply, cached = self._ask(POINTWISE_SYSTEM, user)
        rating = parse_rating(reply)
        verdict = {
            "model": self.model,
            "rating": rating,
            "rationale": reply[-1000:],
            "cached": cached,
        }
        self._count(verdicts=1, unreadable=rating is None)
        if rating is None:
            return None, {**verdict, "outcome": "unreadable", "reason": "no rating in the reply"}
        return rating / 10.0, verdict

    def _compare(self, rec: dict[str, Any], ours: str, theirs: str) -> dict[str, Any]:
        """`ours` against `theirs`, asked in both orders: win, loss, tie or unreadable."""
        winners: list[str | None] = []
        cached_all = True
        for a, b in ((ours, theirs), (theirs, ours)):
            user = self.template.render(_variables(rec, response_a=a, response_b=b))
            reply, cached = self._ask(PAIRWISE_SYSTEM, user)
            cached_all &= cached
            winners.append(parse_winner(reply))
        first, second = winners  # ours was A in the first call and B in the second
        if first is None or second is None:
            outcome = "unreadable"
        elif (first, second) == ("A", "B"):
            outcome = "win"
        elif (first, second) == ("B", "A"):
            outcome = "loss"
        else:
            outcome = "tie"  # the same position won twice: position bias, not a preference
        readable = [w for w in winners if w is not None]
        self._count(
            comparisons=1,
            unreadable=outcome == "unreadable",
            position_ties=outcome == "tie",
            first_position_wins=readable.count("A"),
            readable_calls=len(readable),
        )
        return {"outcome": outcome, "winners": winners, "cached": cached_all}

    def _pairwise(self, rec: dict[str, Any]) -> Score:
        ours, theirs = completion_text(rec.get("completion")), rec.get("reference")
        if not isinstance(theirs, str) or not theirs:
            self._count(no_reference=1)
            return None, {"reason": "pairwise needs a reference answer to compare with"}
        result = self._compare(rec, ours, theirs)
        reward = {"win": 1.0, "loss": 0.0, "tie": 0.5}.get(result["outcome"])
        return reward, {"model": self.model, **result}

    def _samples(self, records: Sequence[dict[str, Any]]) -> list[Score]:
        groups: dict[Any, list[int]] = {}
        for i, r in enumerate(records):
            groups.setdefault(r.get("id"), []).append(i)
        jobs = [
            (i, j) for members in groups.values() for i, j in itertools.combinations(members, 2)
        ]
        texts = [completion_text(r.get("completion")) for r in records]
        results = list(
            self.pool.map(lambda ij: self._compare(records[ij[0]], *(texts[k] for k in ij)), jobs)
        )
        tally = [Counter() for _ in records]
        opponents: list[list[Any]] = [[] for _ in records]
        for (i, j), res in zip(jobs, results, strict=True):
            flip = {"win": "loss", "loss": "win"}.get(res["outcome"], res["outcome"])
            tally[i][res["outcome"]] += 1
            tally[j][flip] += 1
            opponents[i].append(records[j].get("sample"))
            opponents[j].append(records[i].get("sample"))
        out: list[Score] = []
        for i, t in enumerate(tally):
            decided = t["win"] + t["loss"] + t["tie"]
            verdict = {
                "model": self.model,
                "mode": "samples",
                **{k: t[k] for k in ("win", "loss", "tie", "unreadable")},
                "opponents": opponents[i],
            }
            if not opponents[i]:
                self._count(alone=1)
                out.append((None, {**verdict, "reason": "the only sample of its prompt"}))
            elif not decided:
                out.append((None, {**verdict, "reason": "every comparison was unreadable"}))
            else:
                out.append(((t["win"] + 0.5 * t["tie"]) / decided, verdict))
        return out

    def score(self, records: Sequence[dict[str, Any]]) -> list[Score]:
        if self.mode == "samples":
            return self._samples(records)
        fn = self._pointwise if self.mode == "pointwise" else self._pairwise
        return list(self.pool.map(fn, records))

    def describe(self) -> dict[str, Any]:
        """What the run records: which judge, which prompt (by content)."""
        return {
            "model": self.model,
            "mode": self.mode,
            "template": self.template.name,
            "template_sha256": self.template.sha256,
        }

    def report(self) -> dict[str, float]:
        """Counts for the run's metrics: unreadable verdicts and the judge's position bias."""
        c = self.counts
        out: dict[str, float] = {"unreadable": c["unreadable"]}
        if c["no_reference"]:
            out["no_reference"] = c["no_reference"]
        if self.mode == "pointwise":
            out["verdicts"] = c["verdicts"]
        else:
            out |= {"comparisons": c["comparisons"], "position_ties": c["position_ties"]}
            if c["readable_calls"]:
                out["first_position_rate"] = c["first_position_wins"] / c["readable_calls"]
        return out

    def total(self) -> int:
        return self.counts["verdicts"] if self.mode == "pointwise" else self.counts["comparisons"]

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.client.close()
