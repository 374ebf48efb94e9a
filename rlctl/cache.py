"""The user's cache folder for things rlctl can recompute but should not on every start (lm-eval's
task index, the environment scan). Losing it costs time, never a result; a read-only home
just means no cache."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "rlctl"
