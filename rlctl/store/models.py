"""Models are inputs like data: which run produced the weights a command loads.

A model path inside the store (relative or absolute, through symlinks) names its producing run
directly. A path outside it (a checkpoint copied to scratch, a symlink farm) is linked by a
content fingerprint: the index matches it to the model artifact with the same fingerprint.
A hub id is recorded as it is.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from rlctl.store.layout import Store

# What identifies a model's content: the weights and the configuration that shapes them.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
_CONFIG_FILES = ("config.json", "generation_config.json")
_EDGE = 1 << 20  # bytes hashed at each end of a weight file


def fingerprint(path: str | Path) -> str | None:
    """A content fingerprint of a model folder: every weight file's name, size and first and
    last MiB, plus the config files, hashed. Reading a few MiB keeps this fast for a 70B
    checkpoint, and still tells apart two checkpoints of one run (their weights differ in
    the first bytes of every shard). None when the folder holds no weights."""
    root = Path(path)
    if not root.is_dir():
        return None
    files = sorted(
        p
        for p in root.iterdir()
        if p.is_file() and (p.name.endswith(_WEIGHT_SUFFIXES) or p.name in _CONFIG_FILES)
    )
    if not any(p.name.endswith(_WEIGHT_SUFFIXES) for p in files):
        return None
    h = hashlib.sha256()
    for p in files:
        size = p.stat().st_size
        h.update(f"{p.name}\0{size}\0".encode())
        with open(p, "rb") as f:
            h.update(f.read(_EDGE))
            if size > 2 * _EDGE:
                f.seek(-_EDGE, 2)
                h.update(f.read(_EDGE))
    return "sha256:" + h.hexdigest()[:32]


def locate_model(store: Store, model: str) -> tuple[str | None, str, str | None]:
    """(producing run id or None, the path as resolved or the hub id, fingerprint)."""
    path = Path(model).expanduser()
    if not path.exists():
        return None, model, None  # a hub id
    real = path.resolve()
    try:
        rel = real.relative_to(store.artifacts_dir.resolve())
        run_id: str | None = rel.parts[0] if len(rel.parts) > 1 else None
    except ValueError:
        run_id = None
    return run_id, str(real), fingerprint(real)
