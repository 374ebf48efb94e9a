"""Which model references are local paths, and a clear line when one does not exist."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

from rlctl.errors import BadInput


def require_model_path(path: str, option: str = "--model") -> None:
    """A hub id is exactly `org/name`; anything else that looks like a path must exist here,
    or loading would fall through to the hub with a confusing error."""
    looks_local = path.startswith(("/", ".", "~")) or path.count("/") != 1
    local = Path(path).expanduser()
    if looks_local and not local.exists():
        raise BadInput(f"{option} {path}: no such directory (a local path or an org/name hub id)")
    if local.is_dir():
        check_weights(local, option)


def check_weights(model_dir: Path, option: str = "--model") -> None:
    """A truncated or missing weight file is named here, before loading turns it into a
    deserialisation error without a file name. Reads headers only: cheap for any model size."""
    for index in model_dir.glob("*.index.json"):
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError) as e:
            raise BadInput(f"{option} {model_dir}: {index.name} is not a weight index ({e})") from e
        missing = sorted(s for s in shards if not (model_dir / s).is_file())
        if missing:
            raise BadInput(
                f"{option} {model_dir}: {index.name} lists {', '.join(missing)}, which is "
                "missing; copy the whole model directory"
            )
    for f in sorted(model_dir.glob("*.safetensors")):
        problem = _safetensors_problem(f)
        if problem:
            raise BadInput(f"{option} {model_dir}: {f.name} {problem}; copy or save it again")
    for f in sorted([*model_dir.glob("*.bin"), *model_dir.glob("*.pt")]):
        if zipfile.is_zipfile(f) or f.stat().st_size == 0:
            continue
        with f.open("rb") as fh:
            head = fh.read(4)
        if head.startswith(b"PK"):  # a torch zip archive whose directory (at the end) is gone
            raise BadInput(f"{option} {model_dir}: {f.name} is truncated; copy or save it again")


def _safetensors_problem(f: Path) -> str | None:
    size = f.stat().st_size
    try:
        with f.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return f"is truncated ({size} bytes)"
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                return f"is truncated (its header needs {n} bytes, the file has {size})"
            header = json.loads(fh.read(n))
    except (OSError, ValueError) as e:
        return f"has an unreadable header ({e})"
    ends = [
        v["data_offsets"][1]
        for k, v in header.items()
        if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v
    ]
    expected = 8 + n + max(ends, default=0)
    if size < expected:
        return f"is truncated ({size:,} of {expected:,} bytes)"
    return None
