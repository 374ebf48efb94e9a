"""Record schemas and streaming IO (DESIGN.md section 4)."""

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
