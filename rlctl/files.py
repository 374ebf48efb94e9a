"""Writing a file so that no reader ever sees half of it, and the one rule for naming the
temporary files that takes: hidden and ending in `.tmp`, beside the file it becomes. A writer
killed mid-file leaves only such a name, which no reader takes for output and `store gc`
removes (`is_temp`)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import orjson


def temp_name(path: Path) -> Path:
    """Where `path` is written before it is renamed into place: unique per process and call."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")


def is_temp(path: Path) -> bool:
    """A name `temp_name` (or a suffix added to one) gives."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = temp_name(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, orjson.dumps(obj, option=orjson.OPT_INDENT_2, default=str) + b"\n")
