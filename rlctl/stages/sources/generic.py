"""Any dataset: a hub id or a local file, with `--field target=column` naming its columns.

Without `--field`, common column names are recognised (question, answer, chosen, ...), so most
hub datasets pull with no mapping at all; the mapping used is printed and saved in the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from rlctl.errors import BadInput
from rlctl.stages.sources.rows import Row

log = logging.getLogger("rlctl")

TARGETS = ("id", "messages", "prompt", "reference", "chosen", "rejected", "margin", "source")
GUESSES = {
    "messages": ("messages", "conversations", "conversation", "chat"),
    "prompt": ("prompt", "question", "instruction", "problem", "query", "input"),
    "reference": ("answer", "reference", "solution", "target", "output", "label"),
    "chosen": ("chosen",),
    "rejected": ("rejected",),
    "id": ("id", "task_id", "idx"),
}
_SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system", "user": "user"}


def parse_fields(items: dict[str, str] | list[str] | tuple[str, ...]) -> dict[str, str]:
    if isinstance(items, dict):
        pairs = list(items.items())
    else:
        pairs = []
        for item in items:
            if "=" not in item:
                raise BadInput(f"--field {item!r}: expected TARGET=COLUMN, e.g. prompt=question")
            target, column = item.split("=", 1)
            pairs.append((target, column))
    out = {}
    for target, column in pairs:
        if target not in TARGETS and not target.startswith("meta."):
            raise BadInput(
                f"--field {target}={column}: unknown target; "
                f"use one of {', '.join(TARGETS)} or meta.NAME"
            )
        out[target] = column
    return out


def guess_fields(row: dict[str, Any]) -> dict[str, str]:
    found = {}
    for target, names in GUESSES.items():
        col = next((n for n in names if n in row), None)
        if col is not None:
            found[target] = col
    if "messages" in found and "prompt" in found:
        del found["prompt"]
    return found


def kind_of(fields: dict[str, str]) -> str:
    return "pair" if "chosen" in fields and "rejected" in fields else "prompt"


def _dig(row: dict[str, Any], column: str) -> Any:
    node: Any = row
    for part in column.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(column)
        node = node[part]
    return node


def _chat(value: Any) -> Any:
    """ShareGPT (`from`/`value`) turns become `role`/`content` messages."""
    if isinstance(value, list) and value and isinstance(value[0], dict) and "from" in value[0]:
        return [
            {
                "role": _SHAREGPT_ROLES.get(str(m.get("from")), str(m.get("from"))),
                "content": m.get("value"),
            }
            for m in value
        ]
    return value


def convert_rows(
    rows: Iterator[Row], name: str, split: str, fields: dict[str, str], start: int = 0
) -> Iterator[dict[str, Any]]:
    for index, (where, row) in enumerate(rows, start):
        rec: dict[str, Any] = {"source": name}
        meta: dict[str, Any] = {"split": split, "index": index}
        for target, column in fields.items():
            try:
                value = _dig(row, column)
            except KeyError:
                raise BadInput(
                    f"{where}: column {column!r} (for {target}) missing; columns here: "
                    f"{', '.join(sorted(row))}; fix --field {target}=COLUMN"
                ) from None
            if target.startswith("meta."):
                meta[target[5:]] = value
            elif target in ("messages", "chosen", "rejected"):
                rec[target] = _chat(value)
            elif (
                target == "reference"
                and value is not None
                and not isinstance(value, (str, int, float, list))
            ):
                rec[target] = str(value)
            else:
                rec[target] = value
        if isinstance(rec.get("prompt"), list):  # a chat given as "prompt"
            rec["messages"] = _chat(rec.pop("prompt"))
        rec.setdefault("id", f"{name}/{split}/{index}")
        rec["meta"] = meta
        yield rec
