"""Anthropic HH-RLHF: two whole transcripts per row -> one pair record.

Both transcripts are split at their last `\\n\\nAssistant:`. In a few rows (9 of 2,354 in
helpful-base test) the two prefixes differ because the transcripts diverge earlier; there the
prompt is the shared history up to the last assistant turn both still agree on, and chosen and
rejected are the diverging continuations as message lists (TRL's conversational pair format),
so no row is dropped and no prompt is attributed to the wrong answer.
"""

from __future__ import annotations

import os
import re
from typing import Any

from rlctl.errors import BadInput
from rlctl.stages.sources.rows import need

ASSISTANT = "\n\nAssistant:"
_TURN = re.compile(r"\n\n(Human|Assistant):")
_ROLES = {"Human": "user", "Assistant": "assistant"}


def parse_transcript(text: str) -> list[dict[str, str]]:
    parts = _TURN.split(text)
    messages = []
    if parts[0].strip():
        messages.append({"role": "user", "content": parts[0].strip()})
    for role, content in zip(parts[1::2], parts[2::2], strict=True):
        messages.append({"role": _ROLES[role], "content": content.strip()})
    return messages


def split_pair(chosen: str, rejected: str) -> tuple[str, str, str, bool]:
    """(prompt, chosen tail, rejected tail, whether the two prefixes matched)."""
    c, r = chosen.rfind(ASSISTANT), rejected.rfind(ASSISTANT)
    if c >= 0 and r >= 0 and chosen[:c] == rejected[:r]:
        return chosen[:c], chosen[c:], rejected[r:], True
    cut = os.path.commonprefix([chosen, rejected]).rfind(ASSISTANT)  # noqa: RUF071
    if cut < 0:
        raise ValueError("the transcripts share no assistant turn")
    return chosen[:cut], chosen[cut:], rejected[cut:], False


def _continuation(tail: str) -> str | list[dict[str, str]]:
    turns = parse_transcript(tail)
    if len(turns) == 1:
        return turns[0]["content"]
    return turns


SUBSETS = (
    "helpful-base",
    "helpful-online",
    "helpful-rejection-sampled",
    "harmless-base",
    "red-team-attempts",
)


def convert(
    row: dict[str, Any], index: int, split: str, where: str, subset: str | None = None
) -> dict[str, Any]:
    """The id names the subset (helpful and harmless files both count rows from 0), so pulls of
    several subsets can be mixed and still group by prompt."""
    chosen = need(row, "chosen", where, "HH-RLHF")
    rejected = need(row, "rejected", where, "HH-RLHF")
    try:
        prompt, c_tail, r_tail, aligned = split_pair(chosen, rejected)
    except ValueError as e:
        raise BadInput(f"{where}: fields 'chosen'/'rejected': {e}; is this HH-RLHF?") from e
    messages = parse_transcript(prompt)
    if not messages:
        raise BadInput(f"{where}: field 'chosen': no Human turn before the last Assistant turn")
    return {
        "id": "/".join(p for p in ("hh-rlhf", subset, split, str(index)) if p),
        "messages": messages,
        "chosen": _continuation(c_tail),
        "rejected": _continuation(r_tail),
        "source": "hh-rlhf",
        "meta": {"split": split, "subset": subset, "index": index, "prefix_match": aligned},
    }
