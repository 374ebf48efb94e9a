"""Records -> the dataset rows TRL's trainers take (conversational where the records are).

Every record is checked before any model is loaded, so a missing field fails in a second with
`file:line`, not after minutes of loading weights.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rlctl.errors import BadInput


def _prompt(rec: dict[str, Any]) -> list[dict[str, str]] | str:
    if rec.get("messages"):
        return list(rec["messages"])
    return str(rec.get("prompt") or "")


def _as_turns(value: Any, conversational: bool) -> Any:
    """A continuation as TRL wants it next to this prompt: messages for chat, text otherwise."""
    if conversational:
        return value if isinstance(value, list) else [{"role": "assistant", "content": value}]
    if isinstance(value, list):
        return "".join(m["content"] for m in value)
    return value


def dpo_rows(records: Iterable[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for where, rec in records:
        prompt = _prompt(rec)
        chat = isinstance(prompt, list)
        rows.append(
            {
                "id": str(rec.get("id")),  # β-DPO's margin log names its pairs
                "prompt": prompt,
                "chosen": _as_turns(rec["chosen"], chat),
                "rejected": _as_turns(rec["rejected"], chat),
            }
        )
        if not prompt:
            raise BadInput(f"{where}: no prompt (messages or prompt) to train on")
    return rows


def _dig(rec: dict[str, Any], path: str) -> Any:
    node: Any = rec
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _is_conversation(rec: dict[str, Any]) -> bool:
    messages = rec.get("messages") or []
    return bool(messages) and messages[-1].get("role") == "assistant"


def sft_rows(records: Iterable[tuple[str, dict[str, Any]]], target: str) -> list[dict[str, Any]]:
    """prompt + completion pairs; the completion is `target` (a rollout's `completion`, a
    pair's `chosen`, or e.g. `meta.solution` of GSM8K prompt records). A record whose
    `messages` end with an assistant turn, and that has no such field, is a whole
    conversation: it trains as one (every assistant turn), as TRL's `messages` format."""
    rows: list[dict[str, Any]] = []
    first: dict[bool, str] = {}
    for where, rec in records:
        value = _dig(rec, target)
        if value is None and target == "completion" and "chosen" in rec:
            value = rec["chosen"]
        whole = value is None and target == "completion" and _is_conversation(rec)
        first.setdefault(whole, where)
        if len(first) > 1:
            raise BadInput(
                f"{where}: whole conversations ({first[True]}) and prompt + completion records "
                f"({first[False]}) in one run; train them separately"
            )
        if whole:
            rows.append({"messages": list(rec["messages"])})
            continue
        if not value:
            raise BadInput(
                f"{where}: field {target!r} missing; pass --target FIELD "
                "(e.g. meta.solution for GSM8K prompts)"
            )
        prompt = _prompt(rec)
        rows.append({"prompt": prompt, "completion": _as_turns(value, isinstance(prompt, list))})
    return rows


def grpo_rows(records: Iterable[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The prompt plus every column a reward function reads (reference, id, meta)."""
    rows = []
    for where, rec in records:
        prompt = _prompt(rec)
        if not prompt:
            raise BadInput(f"{where}: no prompt (messages or prompt) to train on")
        ref = rec.get("reference")
        source = rec.get("source")
        rows.append(
            {
                "prompt": prompt,
                "reference": None if ref is None else str(ref),
                "id": str(rec["id"]),
                "source": None if source is None else str(source),  # routes rewards
            }
        )
    return rows
