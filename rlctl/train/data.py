"""Records -> the dataset rows TRL's trainers take (conversational where the records are).

Every record is checked before any model is loaded, so a missing field fails in a second with
`file:line`, not after minutes of loading weights.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rlctl.backends.generation import Prompt
from rlctl.errors import BadInput


@dataclass(frozen=True)
class PromptFormat:
    """How a record's prompt reaches the model, with the meaning `rollout` gives the same
    flags, so a policy is trained and sampled with one prompt format: chat messages that the
    chat template renders (a text `prompt` becomes the user turn; `system_prompt` is prepended
    to chats that have no system turn), or, with `chat_template` off, the plain text."""

    chat_template: bool = True
    system_prompt: str | None = None

    def prompt(self, rec: dict[str, Any]) -> list[dict[str, str]] | str:
        p = Prompt.of(rec, self.chat_template, self.system_prompt)
        return list(p.messages) if p.messages is not None else (p.text or "")

    def conversation(self, messages: list[dict[str, str]], where: str) -> list[dict[str, str]]:
        if not self.chat_template:
            raise BadInput(
                f"{where}: a whole conversation needs the chat template; drop --no-chat-template"
            )
        if self.system_prompt and not any(m["role"] == "system" for m in messages):
            return [{"role": "system", "content": self.system_prompt}, *messages]
        return list(messages)


CHAT = PromptFormat()


def prompt_format(conf: dict[str, Any]) -> PromptFormat:
    """The resolved config's `chat_template` and `system_prompt` (absent: chat, none)."""
    return PromptFormat(bool(conf.get("chat_template", True)), conf.get("system_prompt"))


def _as_turns(value: Any, conversational: bool) -> Any:
    """A continuation as TRL wants it next to this prompt: messages for chat, text otherwise."""
    if conversational:
        return value if isinstance(value, list) else [{"role": "assistant", "content": value}]
    if isinstance(value, list):
        return "".join(m["content"] for m in value)
    return value


def dpo_rows(
    records: Iterable[tuple[str, dict[str, Any]]], fmt: PromptFormat = CHAT
) -> list[dict[str, Any]]:
    rows = []
    for where, rec in records:
        prompt = fmt.prompt(rec)
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


def sft_rows(
    records: Iterable[tuple[str, dict[str, Any]]], target: str, fmt: PromptFormat = CHAT
) -> list[dict[str, Any]]:
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
            rows.append({"messages": fmt.conversation(rec["messages"], where)})
            continue
        if not value:
            raise BadInput(
                f"{where}: field {target!r} missing; pass --target FIELD "
                "(e.g. meta.solution for GSM8K prompts)"
            )
        prompt = fmt.prompt(rec)
        rows.append({"prompt": prompt, "completion": _as_turns(value, isinstance(prompt, list))})
    return rows


def grpo_rows(
    records: Iterable[tuple[str, dict[str, Any]]], fmt: PromptFormat = CHAT
) -> list[dict[str, Any]]:
    """The prompt plus every column a reward function reads (reference, id, meta)."""
    rows = []
    for where, rec in records:
        prompt = fmt.prompt(rec)
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
