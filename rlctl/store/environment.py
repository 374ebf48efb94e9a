"""The environment lock every run records, so a result can be re-run on what produced it.

A lock lists every installed distribution and its version (what `pip list` shows, names
normalised as pip does), editable installs with where they point, the Python and platform, and
the GPUs, driver and torch's CUDA build when there are any. It is stored once per distinct
environment as `<store>/environments/<id>.json`, the id being the hash of its content, and
run.json names the id: ten thousand runs in one venv share one file. The index reads each file
once (they never change) into the `environments` and `packages` tables.

Reading ~150 METADATA files costs ~0.2 s, paid by every command, so the lock is cached in the
user's cache folder under a key of what would change it: the interpreter, the host (its GPUs)
and the modification time of each folder on the import path (installing, removing or
upgrading a distribution adds, removes or renames a `*.dist-info` folder there).
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from rlctl.cache import cache_dir
from rlctl.files import atomic_write_bytes, atomic_write_json
from rlctl.store.layout import Store
from rlctl.store.liveness import hostname

log = logging.getLogger("rlctl")


def normalize(name: str) -> str:
    """PEP 503's form of a distribution name, as pip compares them (`lm_eval` -> `lm-eval`)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_id(lock: dict[str, Any]) -> str:
    canonical = json.dumps(lock, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]


def _import_paths() -> list[str]:
    """The readable folders on the import path (a folder this user cannot read is skipped, as
    Python's own import system skips it)."""
    out = []
    for p in sys.path:
        try:
            if p and Path(p).is_dir():
                out.append(p)
        except OSError:
            continue
    return out


def _scan(paths: list[str]) -> dict[str, Any]:
    from importlib import metadata

    packages: dict[str, str] = {}
    editable: dict[str, str] = {}
    for dist in metadata.distributions(path=paths):
        name = dist.metadata["Name"]
        if not name:
            continue  # a broken dist-info folder, which pip skips too
        key = normalize(name)
        if key in packages:
            continue  # shadowed by one earlier on the path, the one Python imports
        packages[key] = dist.version
        url = dist.read_text("direct_url.json")
        if url:
            try:
                info = json.loads(url)
            except ValueError:
                continue
            if (info.get("dir_info") or {}).get("editable"):
                editable[key] = info.get("url", "")
    lock: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": dict(sorted(packages.items())),
        "editable": dict(sorted(editable.items())),
        "accelerators": _accelerators(),
    }
    return lock


def _accelerators() -> dict[str, Any]:
    """GPU names and driver from nvidia-smi, torch's CUDA build from its version file (not
    imported: that costs seconds); empty on a machine without either."""
    out: dict[str, Any] = {}
    if shutil.which("nvidia-smi"):
        try:
            r = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            rows = [line.split(", ") for line in r.stdout.splitlines() if line.strip()]
            if r.returncode == 0 and rows:
                out["gpus"] = [row[0] for row in rows]
                out["driver"] = rows[0][-1]
        except (OSError, subprocess.TimeoutExpired) as e:
            log.debug("nvidia-smi: %s", e)
    cuda = _torch_cuda()
    if cuda:
        out["torch_cuda"] = cuda
    return out


def _torch_cuda() -> str | None:
    from importlib.util import find_spec

    try:
        spec = find_spec("torch")  # finds the package without running it
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    try:
        text = (Path(spec.origin).parent / "version.py").read_text()
    except OSError:
        return None
    m = re.search(r"^cuda(?:\s*:[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.M)
    return m.group(1) if m else None


def environment_lock() -> dict[str, Any]:
    """This process's lock, from the cache when nothing it depends on changed."""
    paths = _import_paths()
    stamp = [sys.executable, hostname()]
    for p in paths:
        try:
            stamp.append(f"{p}:{Path(p).stat().st_mtime_ns}")
        except OSError:
            continue
    key = hashlib.sha256("\n".join(stamp).encode()).hexdigest()[:16]
    cached = cache_dir() / f"environment-{key}.json"
    try:
        return orjson.loads(cached.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        pass
    try:
        lock = _scan(paths)
    except OSError as e:  # an unreadable dist-info: the lock says so, the run goes on
        log.warning("environment lock incomplete: %s", e)
        lock = {"python": platform.python_version(), "packages": {}, "error": str(e)}
        return lock
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cached, orjson.dumps(lock))
    except OSError as e:  # a read-only home: no cache, same lock
        log.debug("environment lock not cached (%s)", e)
    return lock


def record_environment(store: Store, lock: dict[str, Any]) -> str:
    """Write the lock into the store unless an identical one is there; its id."""
    env_id = lock_id(lock)
    path = store.environments_dir / f"{env_id}.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, lock)
    return env_id


def read_lock(store: Store, env_id: str | None) -> dict[str, Any] | None:
    if not env_id:
        return None
    try:
        return orjson.loads((store.environments_dir / f"{env_id}.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
