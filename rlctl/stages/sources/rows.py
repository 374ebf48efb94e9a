"""Rows of a dataset's original files (not our records): JSONL, gzip, a JSON array, Parquet
or CSV, each row paired with where it came from so a conversion error can point at it."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from rlctl.errors import BadInput
from rlctl.records.io import RecordReader

Row = tuple[str, dict[str, Any]]


def read_rows(path: str | Path) -> Iterator[Row]:
    p = str(path)
    low = p.lower()
    if low.endswith(".json"):
        yield from _json_array(Path(p))
    elif low.endswith(".csv"):
        yield from _csv(Path(p))
    else:
        # JSONL, .jsonl.gz, .parquet or stdin: the record reader already streams and locates.
        yield from RecordReader([p]).located()


def _json_array(path: Path) -> Iterator[Row]:
    data = path.read_bytes()
    try:
        rows = orjson.loads(data)
    except orjson.JSONDecodeError:
        # Many ".json" dataset files are JSON lines in disguise.
        yield from RecordReader([str(path)]).located()
        return
    if isinstance(rows, dict):
        rows = next((v for v in rows.values() if isinstance(v, list)), [rows])
    if not isinstance(rows, list):
        raise BadInput(f"{path}: expected a JSON array of objects")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise BadInput(f"{path}:item {i}: expected a JSON object, got {type(row).__name__}")
        yield f"{path}:item {i}", row


def _csv(path: Path) -> Iterator[Row]:
    with open(path, newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.DictReader(f), 2):
            yield f"{path}:{i}", dict(row)


def need(row: dict[str, Any], field: str, where: str, dataset: str, want: type = str) -> Any:
    """A field of an original dataset row, or one line saying which file and row lacks it."""
    if field not in row:
        raise BadInput(
            f"{where}: field {field!r}: missing; is this {dataset}'s original file? "
            f"(fields here: {', '.join(sorted(row)) or 'none'})"
        )
    value = row[field]
    if not isinstance(value, want):
        raise BadInput(
            f"{where}: field {field!r}: expected {want.__name__}, got {type(value).__name__}"
        )
    return value
