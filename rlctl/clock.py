"""The one clock format of the store: UTC, ISO 8601, microseconds (run.json's `started_at`,
metrics' `time`), so times from different hosts sort and compare as text."""

from __future__ import annotations


def utc_now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="microseconds")
