"""Record schemas and streaming IO (DESIGN.md section 4).

Names are loaded on first use: `rlctl sql` needs the schemas, not the readers and writers."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlctl.records.io import (
        STDIN,
        RecordReader,
        RecordWriter,
        StreamWriter,
        dumps,
        expand_sources,
        record_format,
    )
    from rlctl.records.schema import KINDS, Field, Kind, kind, validate

_IO = ("STDIN", "RecordReader", "RecordWriter", "StreamWriter", "dumps", "expand_sources",
       "record_format")  # fmt: skip

__all__ = [
    "KINDS",
    "STDIN",
    "Field",
    "Kind",
    "RecordReader",
    "RecordWriter",
    "StreamWriter",
    "dumps",
    "expand_sources",
    "kind",
    "record_format",
    "validate",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'rlctl.records' has no attribute {name!r}")
    module = "io" if name in _IO else "schema"
    return getattr(importlib.import_module(f"rlctl.records.{module}"), name)
