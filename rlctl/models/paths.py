"""Which model references are local paths, and a clear line when one does not exist."""

from __future__ import annotations

from pathlib import Path

from rlctl.errors import BadInput


def require_model_path(path: str, option: str = "--model") -> None:
    """A hub id is exactly `org/name`; anything else that looks like a path must exist here,
    or loading would fall through to the hub with a confusing error."""
    looks_local = path.startswith(("/", ".", "~")) or path.count("/") != 1
    if looks_local and not Path(path).expanduser().exists():
        raise BadInput(f"{option} {path}: no such directory (a local path or an org/name hub id)")
