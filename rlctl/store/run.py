"""The `Run` context every command opens: one folder of files that says what happened.

A run never touches the DuckDB index: it writes run.json (replaced atomically on every change),
appends to metrics.jsonl and publishes artifacts by rename. That keeps any number of concurrent
runs, on any number of nodes, free of lock errors; the index catches up when someone queries.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import orjson

from rlctl import __version__
from rlctl.clock import utc_now
from rlctl.errors import RunInterrupted
from rlctl.files import atomic_write_json
from rlctl.records.io import RecordWriter
from rlctl.signals import restore_signals, trap_signals
from rlctl.store.environment import environment_lock, normalize, record_environment
from rlctl.store.layout import Store, new_run_id
from rlctl.store.liveness import HEARTBEAT_S, hostname, process_started
from rlctl.store.redact import redact_argv, redact_text, redact_value

log = logging.getLogger("rlctl")

# run.json's layout version: the files are the truth the index is derived from, so a reader
# must know which layout it reads. A run.json without `format` is the first layout (1).
RUN_FORMAT = 1

# Versions recorded in run.json: read from package metadata, never imported (that costs seconds).
TRACKED_PACKAGES = (
    "rlctl",
    "torch",
    "transformers",
    "trl",
    "vllm",
    "accelerate",
    "peft",
    "datasets",
    "lm_eval",
    "duckdb",
    "deepspeed",
)
_ENV_RECORDED = (
    "SLURM_JOB_ID",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_PROCID",
    "CUDA_VISIBLE_DEVICES",
)
# Artifacts are columnar at rest (Parquet, zstd): SQL reads the columns it needs, and the files
# are a fraction of JSONL's size. Pipes and `-o x.jsonl` still carry JSONL. A writer streams
# JSONL to a hidden file and converts it when the artifact is complete.
STORE_FORMAT_ENV = "RLCTL_STORE_FORMAT"
STORE_FORMATS = ("parquet", "jsonl", "jsonl.gz")


def store_format() -> str:
    """The format stored artifacts are written in: Parquet, unless $RLCTL_STORE_FORMAT says
    jsonl (files to grep) or jsonl.gz."""
    from rlctl.errors import BadInput

    fmt = os.environ.get(STORE_FORMAT_ENV) or "parquet"
    if fmt not in STORE_FORMATS:
        raise BadInput(f"{STORE_FORMAT_ENV}={fmt}: use one of {', '.join(STORE_FORMATS)}")
    return fmt


class ParentSource(Protocol):
    """Anything that learns parent run ids while it is consumed (a RecordReader)."""

    parent_run_ids: set[str]


def package_versions(lock: dict[str, Any] | None = None) -> dict[str, str]:
    """The versions that matter most at a glance (the full list is the environment lock)."""
    lock = lock or environment_lock()
    out = {"python": lock["python"]}
    for name in TRACKED_PACKAGES:
        version = lock["packages"].get(normalize(name))
        if version:
            out[name] = version
    out.setdefault("rlctl", __version__)
    return out


def git_state(cwd: Path | None = None) -> dict[str, Any] | None:
    """The experiment's repository (the working directory), so a result can be re-run."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return {"sha": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return None


class Artifact(RecordWriter):
    """A record file inside the run's artifact folder, registered in run.json when closed."""

    def __init__(self, run: Run, name: str, kind: str, fmt: str | None = None) -> None:
        fmt = fmt or store_format()
        self.run = run
        self.name = name
        self.kind = kind
        super().__init__(run.artifact_dir / f"{name}.{fmt}")
        run._open_artifacts.append(self)

    def close(self, ok: bool = True) -> Path:
        if self.closed:
            return self.path
        final = super().close(ok)
        self.run._register_artifact(self, final, complete=ok)
        return final


class Run:
    """Context manager: status `running` on entry; `ok`, `failed` or `interrupted` on exit."""

    def __init__(
        self,
        store: Store,
        command: str,
        *,
        argv: list[str] | None = None,
        config: dict[str, Any] | None = None,
        seed: int | None = None,
    ) -> None:
        self.store = store
        self.command = command
        self.run_id = new_run_id(command)
        self.dir = store.run_dir(self.run_id)
        self.artifact_dir = store.artifacts_dir / self.run_id
        self._open_artifacts: list[Artifact] = []
        self._parent_sources: list[ParentSource] = []
        self._inputs: dict[tuple[str | None, str], dict[str, Any]] = {}
        self._metrics_f: Any = None
        self._stop = threading.Event()
        self._old_handlers: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._environment = environment_lock()
        self.info: dict[str, Any] = {
            "format": RUN_FORMAT,
            "run_id": self.run_id,
            "command": command,
            "argv": redact_argv(list(sys.argv[1:] if argv is None else argv)),
            "config": redact_value(config or {}),
            "seed": seed,
            "status": "running",
            "started_at": utc_now(),
            "ended_at": None,
            "duration_s": None,
            "host": hostname(),
            "pid": os.getpid(),
            "pid_started": process_started(os.getpid()),
            "cwd": str(Path.cwd()),
            "git": git_state(),
            "versions": package_versions(self._environment),
            "environment": None,  # the lock's id, once it is in the store (__enter__)
            "env": {k: os.environ[k] for k in _ENV_RECORDED if k in os.environ},
            "error": None,
            "artifacts": [],
            "inputs": [],
        }

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> Run:
        self.store.ensure()
        self.info["environment"] = record_environment(self.store, self._environment)
        self.dir.mkdir(parents=True)
        self._t0 = time.monotonic()
        self.save()
        (self.dir / "heartbeat").touch()
        threading.Thread(target=self._heartbeat, name="rlctl-heartbeat", daemon=True).start()
        self._old_handlers = trap_signals()
        log.debug("run %s started in %s", self.run_id, self.dir)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        restore_signals(self._old_handlers)
        if exc is None:
            status, error = "ok", None
        elif isinstance(exc, RunInterrupted):
            status, error = "interrupted", exc.reason
        elif isinstance(exc, KeyboardInterrupt):
            status, error = "interrupted", "SIGINT"
        elif isinstance(exc, BrokenPipeError):
            status, error = "interrupted", "the next stage closed the pipe"
        else:
            status, error = "failed", (str(exc).splitlines() or [type(exc).__name__])[0]
        for art in list(self._open_artifacts):
            art.close(ok=status == "ok")
        if self._metrics_f is not None:
            self._metrics_f.close()
        self.finish(status, error)

    def finish(self, status: str, error: str | None = None) -> None:
        for src in self._parent_sources:
            self.add_parents(src.parent_run_ids)
        self.info.update(
            status=status,
            error=None if error is None else redact_text(error),
            ended_at=utc_now(),
            duration_s=round(time.monotonic() - self._t0, 3),
        )
        self.save()
        self.store.note_changed(self.run_id)  # the index re-reads it once, then never again
        log.debug("run %s %s", self.run_id, status)

    def save(self) -> None:
        with self._lock:
            atomic_write_json(self.dir / "run.json", self.info)

    # -- what the run reads --------------------------------------------------------------
    def track_parents(self, source: ParentSource) -> None:
        """Lineage from the `run_id` of every record `source` yields, collected at exit."""
        self._parent_sources.append(source)

    def add_parents(self, run_ids: Iterable[str], via: str = "record") -> None:
        for rid in sorted(set(run_ids) - {self.run_id}):
            self._inputs.setdefault((rid, via), {"run_id": rid, "input": None, "via": via})
        self.info["inputs"] = list(self._inputs.values())

    def add_input(
        self,
        path: str | Path,
        run_id: str | None = None,
        via: str = "file",
        fingerprint: str | None = None,
    ) -> None:
        """An input file (an artifact when `run_id` is known, else a path outside the store)."""
        entry = {"run_id": run_id, "input": str(path), "via": via}
        if fingerprint:
            entry["fingerprint"] = fingerprint
        self._inputs.setdefault((run_id, str(path)), entry)
        self.info["inputs"] = list(self._inputs.values())
        self.save()

    def add_model(self, model: str | Path, via: str = "model") -> None:
        """The model this run loads, linked to the run that produced it (see store.models)."""
        from rlctl.store.models import locate_model

        run_id, where, fp = locate_model(self.store, str(model))
        self.add_input(where, run_id if run_id != self.run_id else None, via, fp)

    # -- what the run writes -------------------------------------------------------------
    def artifact(self, name: str, kind: str, fmt: str | None = None) -> Artifact:
        """A record artifact, in the store's format (`store_format`) unless `fmt` says."""
        return Artifact(self, name, kind, fmt)

    def _register_artifact(self, art: Artifact, final: Path, complete: bool) -> None:
        self._open_artifacts.remove(art)
        self._register(art.name, art.kind, art.format, final, art.count, complete)

    def register_path(self, name: str, kind: str, path: str | Path, fmt: str = "dir") -> None:
        """A finished file or directory (a model, a checkpoint, a log), inside the store or
        not; a path outside the store is kept absolute."""
        self._register(name, kind, fmt, Path(path).absolute(), None, True)

    def _register(
        self, name: str, kind: str, fmt: str, path: Path, records: int | None, complete: bool
    ) -> None:
        try:
            where = str(path.relative_to(self.store.root))
        except ValueError:
            where = str(path)
        size = path.stat().st_size if path.is_file() else _tree_size(path)
        entry = {
            "name": name,
            "kind": kind,
            "format": fmt,
            "path": where,
            "records": records,
            "bytes": size,
            "complete": complete,
            "created_at": utc_now(),
        }
        if kind == "model":
            from rlctl.store.models import fingerprint

            entry["fingerprint"] = fingerprint(path)
        self.info["artifacts"].append(entry)
        self.save()

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        """Append-only: one line per event, written whole, so a tail never sees half a line."""
        if self._metrics_f is None:
            self._metrics_f = open(self.dir / "metrics.jsonl", "ab")  # noqa: SIM115
        line = {"run_id": self.run_id, "step": step, "name": name, "value": value}
        line["time"] = utc_now()
        self._metrics_f.write(orjson.dumps(line) + b"\n")
        self._metrics_f.flush()

    # -- liveness ------------------------------------------------------------------------
    def _heartbeat(self) -> None:
        beat = self.dir / "heartbeat"
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(beat)
            except OSError:
                return


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


class DryRun(Run):
    """A run that records nothing: `--dry-run` drives a stage's own checks through it, up to
    the point where a model would load, so the dry run checks exactly what the real run would.
    Inputs and config changes stay in memory; what a stage writes before that point (a
    generated task file) goes to a temporary folder that is removed on exit."""

    def __enter__(self) -> DryRun:
        import tempfile

        self._tmp = tempfile.TemporaryDirectory(prefix="rlctl-dry-run-")
        self.dir = Path(self._tmp.name) / "run"
        self.artifact_dir = Path(self._tmp.name) / "artifacts"
        self.dir.mkdir()
        self._t0 = time.monotonic()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for art in list(self._open_artifacts):
            art.close(ok=False)
        self._tmp.cleanup()

    def save(self) -> None:
        pass

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        pass
