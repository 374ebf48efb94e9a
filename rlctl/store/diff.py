"""What differs between two runs, from their records alone: the resolved config (key by key),
the inputs (by the content hash of each file), the code (git commit, host), the environment
(every installed package, from the runs' environment locks), and the metrics at their last
step. Two evals of one checkpoint that score differently should be explained by this list, or
the difference is not in anything rlctl records."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from rlctl.store.environment import normalize, read_lock
from rlctl.store.layout import Store

MISSING = "(absent)"


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """`{"trainer": {"beta": 0.1}}` -> `{"trainer.beta": 0.1}`; lists stay whole."""
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


def file_hash(path: str | Path) -> str | None:
    """sha256 of a file (or of a folder's files, names included), None when it is gone."""
    p = Path(path)
    h = hashlib.sha256()
    try:
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            if p.is_dir():
                h.update(str(f.relative_to(p)).encode() + b"\0")
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()[:16]


def inputs_of(run: dict[str, Any]) -> dict[str, str]:
    """`via` + position -> what was read, by content (or by run id for a record stream)."""
    out: dict[str, str] = {}
    for i, inp in enumerate(run.get("inputs") or []):
        key = f"{inp.get('via')}[{i}]"
        path = inp.get("input")
        if path:
            digest = file_hash(path)
            out[key] = f"sha256:{digest}" if digest else f"{path} (gone)"
        else:
            out[key] = f"run {inp.get('run_id')}"
    return out


def last_metrics(store: Store, run_id: str) -> dict[str, float]:
    """Each metric's value at its last step (the last event when steps tie or are absent)."""
    path = store.run_dir(run_id) / "metrics.jsonl"
    last: dict[str, tuple[float, float]] = {}
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return {}
    for line in lines:
        try:
            e = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a torn last line of a killed run
        step = e.get("step")
        key = -1.0 if step is None else float(step)
        if e["name"] not in last or key >= last[e["name"]][0]:
            last[e["name"]] = (key, e["value"])
    return {name: value for name, (_, value) in last.items()}


def environment_of(store: Store, run: dict[str, Any]) -> dict[str, Any]:
    """The run's environment lock, flattened; a run recorded before locks existed falls back
    to the few versions it kept, under the same keys."""
    lock = read_lock(store, run.get("environment"))
    if lock is None:
        versions = dict(run.get("versions") or {})
        lock = {"python": versions.pop("python", None)}
        lock["packages"] = {normalize(k): v for k, v in versions.items()}
    packages = lock.pop("packages", {}) or {}
    return {
        **flatten({k: v for k, v in lock.items() if v not in (None, {})}),
        **{f"packages.{k}": v for k, v in packages.items()},
    }


def diff_runs(store: Store, a: str, b: str) -> Iterator[dict[str, Any]]:
    """Rows `{section, key, a, b}` for every recorded thing that differs between runs a and b:
    sections `run` (command, status, seed), `config`, `inputs`, `code` (git, host),
    `environment` (python, platform, accelerators, packages), `metrics` (at their last step)."""
    ra, rb = store.read_run(a) or {}, store.read_run(b) or {}
    sections = {
        "run": lambda r, _: {k: r.get(k) for k in ("command", "status", "seed")},
        "config": lambda r, _: flatten(r.get("config") or {}),
        "inputs": lambda r, _: inputs_of(r),
        "code": lambda r, _: {
            "git": (r.get("git") or {}).get("sha"),
            "git dirty": (r.get("git") or {}).get("dirty"),
            "host": r.get("host"),
        },
        "environment": lambda r, _: environment_of(store, r),
        "metrics": lambda _, rid: last_metrics(store, rid),
    }
    for section, of in sections.items():
        left, right = of(ra, a), of(rb, b)
        for key in sorted(set(left) | set(right)):
            va, vb = left.get(key, MISSING), right.get(key, MISSING)
            if va != vb:
                yield {"section": section, "key": key, "a": va, "b": vb}
