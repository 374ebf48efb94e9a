"""Where things live in a store; its files are written atomically (`rlctl.files`).

Files are the truth (DESIGN.md section 5): every writer touches only its own run's folder and
replaces files by rename, so a reader on any node sees an old or a new version, never half of one.
"""

from __future__ import annotations

import itertools
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from rlctl.errors import BadInput
from rlctl.files import atomic_write_json

STORE_ENV = "RLCTL_STORE"
DEFAULT_STORE = ".rlctl"


def resolve_root(cli_value: str | Path | None = None) -> Path:
    """`--store`, else `$RLCTL_STORE`, else `./.rlctl`."""
    value = cli_value or os.environ.get(STORE_ENV) or DEFAULT_STORE
    return Path(value).expanduser().absolute()


def new_run_id(command: str) -> str:
    """Sortable by start time, readable in `ls`, unique across hosts without coordination."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    slug = "".join(c if c.isalnum() else "-" for c in command.lower()).strip("-") or "run"
    return f"{stamp}-{slug}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Store:
    root: Path

    @classmethod
    def open(cls, cli_value: str | Path | None = None) -> Store:
        root = resolve_root(cli_value)
        fix = f"pass --store DIR or set {STORE_ENV}"
        if root.exists() and not root.is_dir():
            raise BadInput(f"store {root} is not a directory; {fix}")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # under a file, under /proc, read-only, no permission
            raise BadInput(f"store {root}: cannot create it ({e.strerror}); {fix}") from None
        return cls(root)

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def artifacts_dir(self) -> Path:
        return self.root / "artifacts"

    @property
    def environments_dir(self) -> Path:
        """Environment locks, one file per distinct environment (store/environment.py)."""
        return self.root / "environments"

    @property
    def changed_dir(self) -> Path:
        """The journal of run.json changes after a run ended (store/index.py reads it)."""
        return self.root / "changed"

    @property
    def index_path(self) -> Path:
        return self.root / "index.duckdb"

    @property
    def lock_path(self) -> Path:
        return self.root / "index.lock"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def run_json(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "run.json"

    def ensure(self) -> None:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)

    def note_changed(self, run_id: str) -> None:
        """Journal that `run_id`'s run.json changed (it ended, or an ended run was edited):
        the index re-reads only the runs named here and the ones still running, never the
        files of runs that ended before its last sync. One new empty file per change, so a
        change made while the index syncs is never lost with the marker it already read."""
        self.changed_dir.mkdir(parents=True, exist_ok=True)
        (self.changed_dir / f"{run_id}~{os.getpid()}-{secrets.token_hex(4)}").touch()

    def changed_markers(self) -> list[tuple[str, str]]:
        """(marker file name, run id) of every journalled change not yet indexed."""
        try:
            names = [e.name for e in os.scandir(self.changed_dir)]
        except FileNotFoundError:
            return []
        return [(n, n.partition("~")[0]) for n in names if "~" in n and not n.startswith(".")]

    def write_run(self, run: dict[str, Any]) -> None:
        """Replace a run's run.json, journalled for the index (gc, Slurm state updates)."""
        atomic_write_json(self.run_json(run["run_id"]), run)
        self.note_changed(run["run_id"])

    def read_run(self, run_id: str) -> dict[str, Any] | None:
        try:
            return orjson.loads(self.run_json(run_id).read_bytes())
        except (FileNotFoundError, NotADirectoryError):
            return None
        except orjson.JSONDecodeError:
            # Only a hand-edited file can be torn (we write by rename); treat it as unknown.
            return None

    def run_ids(self, newest_first: bool = True) -> list[str]:
        """Run ids sort by start time because they begin with a UTC timestamp."""
        try:
            ids = [e.name for e in os.scandir(self.runs_dir) if e.is_dir()]
        except FileNotFoundError:
            return []
        return sorted(ids, reverse=newest_first)

    def iter_runs(self) -> Iterator[dict[str, Any]]:
        """Newest first by start time; skips folders without a readable run.json (a run being
        created). Ids sort by the second a run started in, then by their random part, so the
        runs of one second (a fast pull, then another) are ordered by their recorded start."""
        for _, same_second in itertools.groupby(self.run_ids(), key=lambda rid: rid[:15]):
            runs = [r for rid in same_second if (r := self.read_run(rid)) is not None]
            runs.sort(key=lambda r: str(r.get("started_at") or ""), reverse=True)
            yield from runs

    def match_run(self, ref: str) -> str:
        """A full run id, a unique prefix of one, or a unique suffix (the random part)."""
        ids = self.run_ids()
        if ref in ids:
            return ref
        hits = [i for i in ids if i.startswith(ref) or i.endswith(ref)]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise BadInput(f"no run {ref!r} in store {self.root}; see 'rlctl runs ls'")
        raise BadInput(f"{ref!r} matches {len(hits)} runs ({', '.join(hits[:3])}, ...); be longer")
