"""lm-eval's task index, cached. `TaskManager()` parses all ~15,000 task YAMLs lm-eval ships
on every start (4-6 s on a laptop core, paid by every `rlctl eval` and twice by a group read
offline); they change only when lm-eval does. The index of that one directory is pickled once
per lm-eval version and location under the user's cache directory, and read back in a fraction
of a second; include paths (rlctl's generated task YAMLs) are always parsed fresh.
`RLCTL_NO_TASK_CACHE=1` turns it off."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rlctl.cache import cache_dir

log = logging.getLogger("rlctl")


def task_manager(include_path: str | Path | None = None) -> Any:
    """lm-eval's TaskManager, its built-in task index read from the cache when it can be."""
    from lm_eval.tasks import TaskManager

    _install()
    return TaskManager(include_path=str(include_path) if include_path else None)


@functools.cache
def _install() -> None:
    if os.environ.get("RLCTL_NO_TASK_CACHE"):
        return
    try:
        from lm_eval.tasks._index import TaskIndex
    except ImportError:  # another lm-eval layout: no cache, same results
        return
    import lm_eval
    import lm_eval.tasks

    builtin = Path(lm_eval.tasks.__file__).parent
    original = TaskIndex.build
    key = hashlib.sha256(f"{lm_eval.__version__}|{builtin}".encode()).hexdigest()[:16]
    path = cache_dir() / f"lm-eval-task-index-{key}.pickle"

    def build(paths: Iterable[Path], *, resolve_includes: bool = True) -> dict[str, Any]:
        paths = [Path(p) for p in paths]
        if not paths or paths[0] != builtin or not resolve_includes:
            return original(paths, resolve_includes=resolve_includes)
        index = _load(path)
        if index is None:
            index = original([builtin], resolve_includes=True)
            _save(path, index)
        index = dict(index)
        if len(paths) > 1:  # later paths override the built-in tasks, as in lm-eval
            index.update(original(paths[1:], resolve_includes=True))
        return index

    TaskIndex.build = staticmethod(build)


def _load(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as f:
            return pickle.load(f)  # our own file, written below
    except FileNotFoundError:
        return None
    except Exception as e:  # noqa: BLE001 (a torn or foreign file: rebuild it)
        log.debug("lm-eval task index cache %s unreadable (%s): rebuilt", path, e)
        return None


def _save(path: Path, index: dict[str, Any]) -> None:
    from rlctl.files import atomic_write_bytes

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, pickle.dumps(index, protocol=pickle.HIGHEST_PROTOCOL))
    except OSError as e:  # a read-only home: no cache, same results
        log.debug("lm-eval task index not cached (%s)", e)
