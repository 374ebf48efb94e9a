"""What every judge is: a batch of records in, one (reward, verdict) per record out.

Batches, not single records, because the expensive judges are batched underneath (sandboxes in
parallel, concurrent HTTP calls, a reward model's forward pass); the cheap ones just loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

Score = tuple[float | None, dict[str, Any]]


class Judge(Protocol):
    name: str

    def score(self, records: Sequence[dict[str, Any]]) -> list[Score]: ...

    def close(self) -> None: ...


def completion_text(value: Any) -> str:
    """A completion as TRL hands it over: a string, or a conversational list of messages."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        return str(value[-1].get("content") or "")
    if isinstance(value, dict):
        return str(value.get("content") or "")
    return "" if value is None else str(value)
