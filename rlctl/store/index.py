"""The DuckDB index: a derived, disposable view of the store's files, made for SQL.

DuckDB lets one process at a time open a file for writing. Runs never open the index, so writers
never contend for it. Readers (`rlctl sql`, `runs ls`) take an exclusive `flock` on `index.lock`,
then sync and query in one short connection. Readers queue for it and never see DuckDB's lock
error. Sync is incremental: it re-reads only the run.json files whose size or mtime changed. Record
kinds and metrics are views over the artifact files themselves, so the index stays small and a
`store rebuild` (delete, then sync) gives the same answers.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from rlctl.clock import utc_now
from rlctl.errors import RlctlError
from rlctl.files import atomic_write_json
from rlctl.records.schema import KINDS, Kind
from rlctl.store.layout import Store
from rlctl.store.liveness import death_reason

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger("rlctl")

SCHEMA_VERSION = 5
LOCK_TIMEOUT_ENV = "RLCTL_LOCK_TIMEOUT"

_RUNS_COLUMNS = {
    "run_id": "VARCHAR PRIMARY KEY",
    "command": "VARCHAR",
    "status": "VARCHAR",
    "started_at": "TIMESTAMP",
    "ended_at": "TIMESTAMP",
    "duration_s": "DOUBLE",
    "host": "VARCHAR",
    "pid": "BIGINT",
    "seed": "BIGINT",
    "error": "VARCHAR",
    "git_sha": "VARCHAR",
    "git_dirty": "BOOLEAN",
    "cwd": "VARCHAR",
    "argv": "JSON",
    "config": "JSON",
    "versions": "JSON",
    "env": "JSON",
    "env_id": "VARCHAR",
    "slurm_job": "VARCHAR",
    "run_dir": "VARCHAR",
    "file_mtime_ns": "BIGINT",
    "file_size": "BIGINT",
}
_ARTIFACTS_COLUMNS = {
    "run_id": "VARCHAR",
    "name": "VARCHAR",
    "kind": "VARCHAR",
    "format": "VARCHAR",
    "path": "VARCHAR",
    "records": "BIGINT",
    "bytes": "BIGINT",
    "complete": "BOOLEAN",
    "created_at": "TIMESTAMP",
    "fingerprint": "VARCHAR",
}
_LINEAGE_COLUMNS = {
    "run_id": "VARCHAR",
    "parent_run_id": "VARCHAR",
    "input": "VARCHAR",
    "via": "VARCHAR",
    "fingerprint": "VARCHAR",
}
_METRICS_COLUMNS = {
    "run_id": "VARCHAR",
    "step": "BIGINT",
    "name": "VARCHAR",
    "value": "DOUBLE",
    "time": "TIMESTAMP",
}
_TABLES = {
    "runs": _RUNS_COLUMNS,
    "artifacts": _ARTIFACTS_COLUMNS,
    "lineage": _LINEAGE_COLUMNS,
    "metrics_ended": _METRICS_COLUMNS,  # ended runs' metrics, copied once (the view unions them)
}
# Environment locks are content-addressed and never change: each file is read once.
_ENVIRONMENTS_COLUMNS = {
    "env_id": "VARCHAR PRIMARY KEY",
    "python": "VARCHAR",
    "implementation": "VARCHAR",
    "platform": "VARCHAR",
    "accelerators": "JSON",
    "editable": "JSON",
    "packages": "JSON",
}
_PACKAGES_COLUMNS = {"env_id": "VARCHAR", "name": "VARCHAR", "version": "VARCHAR"}
_ENV_TABLES = {"environments": _ENVIRONMENTS_COLUMNS, "packages": _PACKAGES_COLUMNS}


@dataclass
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]


_RUN_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "format": (int,),
    "run_id": (str,),
    "command": (str,),
    "status": (str,),
    "duration_s": (int, float),
    "host": (str,),
    "pid": (int,),
    "seed": (int,),
    "error": (str,),
    "cwd": (str,),
    "git": (dict,),
    "artifacts": (list,),
    "inputs": (list,),
    "started_at": (str,),
    "ended_at": (str,),
}


def _damage(run: Any, rid: str, path: Path) -> str | None:
    """Why a run.json cannot be indexed as it is, or None. Checked field by field so that a
    hand-edited file is named instead of failing every query of the store."""
    fix = f"fix or remove {path}"
    if run is None:
        return f"run.json is not valid JSON; {fix}"
    if not isinstance(run, dict):
        return f"run.json is not a JSON object; {fix}"
    from rlctl.store.run import RUN_FORMAT

    if isinstance(run.get("format"), int) and run["format"] > RUN_FORMAT:
        return (
            f"run.json is format {run['format']}, written by a newer rlctl (this one reads up "
            f"to {RUN_FORMAT}); upgrade rlctl to read {path}"
        )
    for name, types in _RUN_FIELD_TYPES.items():
        value = run.get(name)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            return f"run.json field {name!r} has the wrong type ({type(value).__name__}); {fix}"
    if run.get("run_id") != rid:
        return f"run.json says run_id {run.get('run_id')!r}, its folder is {rid}; {fix}"
    for name in ("started_at", "ended_at"):
        if run.get(name):
            try:
                datetime.fromisoformat(run[name])
            except ValueError:
                return f"run.json field {name!r} is not a timestamp; {fix}"
    for name in ("artifacts", "inputs"):
        if not all(isinstance(x, dict) for x in run.get(name) or []):
            return f"run.json field {name!r} holds something that is not an object; {fix}"
    if not all(isinstance(a.get("path"), str) for a in run.get("artifacts") or []):
        return f"run.json has an artifact without a path; {fix}"
    return None


def _timestamp(value: str | None) -> str | None:
    """run.json keeps ISO-8601 UTC with offset; the index holds naive UTC timestamps."""
    return value.replace("+00:00", "") if value else None


class Index:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- connection ------------------------------------------------------------------------
    @contextlib.contextmanager
    def connect(self, sync: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """Exclusive, short: lock, open, sync, hand out, close, unlock."""
        self.store.ensure()
        with _flock(self.store.lock_path):
            con = self._open()
            try:
                if sync:
                    self.sync(con)
                yield con
            finally:
                con.close()

    def _open(self) -> duckdb.DuckDBPyConnection:
        import duckdb

        deadline = time.monotonic() + _lock_timeout()
        delay = 0.05
        while True:
            try:
                return duckdb.connect(str(self.store.index_path))
            except duckdb.IOException as e:
                if "lock" not in str(e).lower():
                    return self._recreate(e)
                # Someone outside rlctl (a duckdb shell) holds the file; wait for it.
                if time.monotonic() > deadline:
                    raise RlctlError(
                        f"index {self.store.index_path} is held by another program ({e}); "
                        "close it, or run 'rlctl store rebuild'"
                    ) from e
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
            except duckdb.Error as e:
                return self._recreate(e)

    def _recreate(self, why: Exception) -> duckdb.DuckDBPyConnection:
        """The index is derived, so a damaged one is moved aside and rebuilt, never fatal."""
        import duckdb

        log.warning("index unreadable (%s); rebuilding it from the run files", why)
        self._remove_index_files(keep_as=".damaged")
        return duckdb.connect(str(self.store.index_path))

    def _remove_index_files(self, keep_as: str | None = None) -> None:
        for p in (self.store.index_path, self.store.index_path.with_name("index.duckdb.wal")):
            if p.exists():
                if keep_as:
                    os.replace(p, p.with_name(p.name + keep_as))
                else:
                    p.unlink()

    def rebuild(self) -> int:
        """Delete the index and derive it again from the files; returns the number of runs."""
        self.store.ensure()
        with _flock(self.store.lock_path):
            self._remove_index_files()
            con = self._open()
            try:
                self.sync(con)
                return con.execute("SELECT count(*) FROM runs").fetchone()[0]
            finally:
                con.close()

    def query(self, sql: str, params: list[Any] | None = None) -> QueryResult:
        import duckdb

        from rlctl.errors import BadInput

        with self.connect() as con:
            try:
                cur = con.execute(sql, params or [])
            except duckdb.Error as e:
                msg = str(e).strip().splitlines()[0]
                raise BadInput(f"SQL error: {msg}; tables: {', '.join(self.tables())}") from e
            if cur.description is None:
                return QueryResult([], [], [])
            cols = [d[0] for d in cur.description]
            types = [str(d[1]) for d in cur.description]
            return QueryResult(cols, types, cur.fetchall())

    @staticmethod
    def tables() -> list[str]:
        shown = [t for t in _TABLES if t != "metrics_ended"]
        return [*shown, *_ENV_TABLES, "metrics", *(k.table for k in KINDS.values())]

    # -- sync ------------------------------------------------------------------------------
    def _ensure_schema(self, con: duckdb.DuckDBPyConnection) -> bool:
        """The tables, created when the index is new, of another schema version or of a store
        that moved; returns whether the views exist (they are made after the first sync)."""
        try:
            meta = dict(con.execute("SELECT key, value FROM index_meta").fetchall())
        except duckdb_catalog_error():
            con.execute("CREATE TABLE index_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
            meta = {}
        expected = {"schema_version": str(SCHEMA_VERSION), "root": str(self.store.root)}
        if {k: meta.get(k) for k in expected} == expected:
            return meta.get("views") == "1"
        # New, a new rlctl, or a store moved to another path (copied off a cluster): start over.
        for name in [*_TABLES, *_ENV_TABLES]:
            con.execute(f"DROP TABLE IF EXISTS {name}")
        con.execute("DELETE FROM index_meta")
        con.executemany("INSERT INTO index_meta VALUES (?, ?)", list(expected.items()))
        for name, cols in {**_TABLES, **_ENV_TABLES}.items():
            body = ", ".join(f"{c} {t}" for c, t in cols.items())
            con.execute(f"CREATE TABLE {name} ({body})")
        return False

    def sync(self, con: duckdb.DuckDBPyConnection) -> None:
        """Read only what changed since the last sync: new run folders (a directory listing,
        no stat of the others), runs still running or damaged, and the runs the change journal
        names (a run that ended, an ended run that gc or Slurm rewrote). A run that ended
        before the last sync is never opened again; its metrics were copied into the index
        when it ended."""
        has_views = self._ensure_schema(con)
        known = {
            rid: (status, mtime, size)
            for rid, status, mtime, size in con.execute(
                "SELECT run_id, status, file_mtime_ns, file_size FROM runs"
            ).fetchall()
        }
        markers = self.store.changed_markers()
        journalled = {rid for _, rid in markers}
        listing = self.store.run_ids()
        seen: set[str] = set(listing)
        fresh: list[tuple[dict[str, Any], os.stat_result]] = []
        for rid in listing:
            old = known.get(rid)
            settled = old is not None and old[0] not in ("running", "damaged")
            if settled and rid not in journalled:
                continue
            path = self.store.run_json(rid)
            try:
                st = path.stat()
            except (FileNotFoundError, NotADirectoryError):
                seen.discard(rid)  # a run folder being created: its run.json is not there yet
                continue
            unchanged = old is not None and (old[1], old[2]) == (st.st_mtime_ns, st.st_size)
            if unchanged and old[0] != "running":
                continue
            run = self.store.read_run(rid)
            damage = _damage(run, rid, path)
            if damage:
                # one bad file must not take the store down, nor vanish from it
                log.warning("run %s: %s; it is listed with status 'damaged'", rid, damage)
                fresh.append(({"run_id": rid, "status": "damaged", "error": damage}, st))
                continue
            assert run is not None
            reason = death_reason(run, self.store.run_dir(rid))
            if reason:
                # the process may have written its end and exited since the read above:
                # now that it is gone, the file says how it ended, or that it never did
                now = self.store.read_run(rid)
                if now is not None and now.get("status") != "running":
                    run, st = now, path.stat()
                else:
                    run = self._mark_interrupted(run, reason)
                    st = path.stat()
            elif unchanged:
                continue
            fresh.append((run, st))

        gone = [rid for rid in known if rid not in seen]
        stale = gone + [r["run_id"] for r, _ in fresh]
        con.execute("BEGIN TRANSACTION")
        try:
            if stale:
                for table in _TABLES:
                    con.execute(f"DELETE FROM {table} WHERE list_contains(?, run_id)", [stale])
            self._insert_runs(con, fresh)
            self._insert_environments(con)
            self._compact_metrics(con, [r["run_id"] for r, _ in fresh if r["status"] != "running"])
            if fresh:  # a new consumer or a new producer of a model: match them up
                _link_models_by_content(con)
            running = con.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()
            if fresh or gone or not has_views:
                self._create_views(con)
            elif running[0]:  # a running run's metrics file may be new; its artifacts are not
                self._create_metrics_view(con)  # complete, so the record views stand
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        for name, _ in markers:  # read: the runs they name are in the index now
            with contextlib.suppress(FileNotFoundError):
                (self.store.changed_dir / name).unlink()

    def _compact_metrics(self, con: duckdb.DuckDBPyConnection, ended: list[str]) -> None:
        """An ended run's metrics.jsonl, copied once into the `metrics_ended` table, so no
        query parses it again (store rebuild copies it again from the file)."""
        files = [
            str(p)
            for rid in ended
            if (p := self.store.run_dir(rid) / "metrics.jsonl").exists() and p.stat().st_size
        ]
        if files:
            select = _files_select(files, _METRICS_COLUMNS)
            con.execute(f"INSERT INTO metrics_ended SELECT * FROM ({select})")

    def _mark_interrupted(self, run: dict[str, Any], reason: str) -> dict[str, Any]:
        """Files are the truth, so the verdict goes into run.json, not just the index."""
        run = dict(run, status="interrupted", error=reason, ended_at=utc_now())
        atomic_write_json(self.store.run_json(run["run_id"]), run)
        log.info("run %s marked interrupted: %s", run["run_id"], reason)
        return run

    def _insert_runs(
        self, con: duckdb.DuckDBPyConnection, fresh: list[tuple[dict[str, Any], os.stat_result]]
    ) -> None:
        runs: list[dict[str, Any]] = []
        arts: list[dict[str, Any]] = []
        lineage: list[dict[str, Any]] = []
        for run, st in fresh:
            rid = run["run_id"]
            git = run.get("git") or {}
            runs.append(
                {
                    **{c: run.get(c) for c in ("run_id", "command", "status", "duration_s")},
                    **{c: run.get(c) for c in ("host", "pid", "seed", "error", "cwd")},
                    "started_at": _timestamp(run.get("started_at")),
                    "ended_at": _timestamp(run.get("ended_at")),
                    "git_sha": git.get("sha"),
                    "git_dirty": git.get("dirty"),
                    **{c: _json(run.get(c)) for c in ("argv", "config", "versions", "env")},
                    "env_id": run.get("environment"),
                    "slurm_job": _slurm_job(run),
                    "run_dir": str(self.store.run_dir(rid)),
                    "file_mtime_ns": st.st_mtime_ns,
                    "file_size": st.st_size,
                }
            )
            for a in run.get("artifacts") or []:
                arts.append(
                    {
                        **{c: a.get(c) for c in _ARTIFACTS_COLUMNS if c != "created_at"},
                        "run_id": rid,
                        "path": str(self.store.root / a["path"]),
                        "created_at": _timestamp(a.get("created_at")),
                    }
                )
            for i in run.get("inputs") or []:
                lineage.append(
                    {"run_id": rid, "parent_run_id": i.get("run_id"), "input": i.get("input")}
                    | {"via": i.get("via"), "fingerprint": i.get("fingerprint")}
                )
        _insert_columns(con, "runs", _RUNS_COLUMNS, runs)
        _insert_columns(con, "artifacts", _ARTIFACTS_COLUMNS, arts)
        _insert_columns(con, "lineage", _LINEAGE_COLUMNS, lineage)

    def _insert_environments(self, con: duckdb.DuckDBPyConnection) -> None:
        """Only lock files the index has not read yet: a listing, no stat of the known ones."""
        known = {r[0] for r in con.execute("SELECT env_id FROM environments").fetchall()}
        try:
            names = [e.name for e in os.scandir(self.store.environments_dir)]
        except FileNotFoundError:
            return
        envs: list[dict[str, Any]] = []
        packages: list[dict[str, Any]] = []
        for name in sorted(names):
            env_id = name.removesuffix(".json")
            if not name.endswith(".json") or name.startswith(".") or env_id in known:
                continue
            try:
                lock = orjson.loads((self.store.environments_dir / name).read_bytes())
                pkgs = dict(lock["packages"])
            except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                log.warning("environment lock %s unreadable (%s); not indexed", name, e)
                continue
            envs.append(
                {"env_id": env_id, **{c: lock.get(c) for c in ("python", "implementation")}}
                | {"platform": lock.get("platform"), "packages": _json(pkgs)}
                | {c: _json(lock.get(c)) for c in ("accelerators", "editable")}
            )
            packages += [{"env_id": env_id, "name": n, "version": v} for n, v in pkgs.items()]
        _insert_columns(con, "environments", _ENVIRONMENTS_COLUMNS, envs)
        _insert_columns(con, "packages", _PACKAGES_COLUMNS, packages)

    def _create_metrics_view(self, con: duckdb.DuckDBPyConnection) -> None:
        """Ended runs' metrics (copied into the index) plus the running runs' files."""
        running = [
            str(p)
            for (rid,) in con.execute("SELECT run_id FROM runs WHERE status = 'running'").fetchall()
            if (p := self.store.run_dir(rid) / "metrics.jsonl").exists() and p.stat().st_size
        ]
        live = f" UNION ALL {_files_select(running, _METRICS_COLUMNS)}" if running else ""
        con.execute(f"CREATE OR REPLACE VIEW metrics AS SELECT * FROM metrics_ended{live}")

    def _create_views(self, con: duckdb.DuckDBPyConnection) -> None:
        """The metrics view and one view per record kind over its complete artifacts; made
        only when a sync found something new or gone (record views read every file's
        footer to be made)."""
        self._create_metrics_view(con)
        files = con.execute(
            "SELECT kind, format, path FROM artifacts WHERE complete ORDER BY path"
        ).fetchall()
        for k in KINDS.values():
            mine = [(fmt, p) for kind, fmt, p in files if kind == k.name and Path(p).exists()]
            con.execute(f"CREATE OR REPLACE VIEW {k.table} AS {_kind_select(con, k, mine)}")
        con.execute("INSERT OR REPLACE INTO index_meta VALUES ('views', '1')")


def duckdb_catalog_error() -> type[Exception]:
    import duckdb

    return duckdb.CatalogException


def _link_models_by_content(con: duckdb.DuckDBPyConnection) -> None:
    """A model loaded from outside the store (a copied checkpoint) names no run; its content
    fingerprint finds the run whose model artifact it is (the earliest, when several are)."""
    con.execute(
        """
        UPDATE lineage SET parent_run_id = m.run_id
        FROM (
            SELECT fingerprint, arg_min(run_id, created_at) AS run_id
            FROM artifacts WHERE kind = 'model' AND fingerprint IS NOT NULL GROUP BY 1
        ) m
        WHERE lineage.parent_run_id IS NULL AND lineage.fingerprint = m.fingerprint
          AND lineage.run_id != m.run_id
        """
    )


def _slurm_job(run: dict[str, Any]) -> str | None:
    """The job a run belongs to: the one it submitted, or the one it ran in (an array's
    tasks all count as the array job)."""
    env = run.get("env") or {}
    submitted = (run.get("slurm") or {}).get("job_id")
    return submitted or env.get("SLURM_ARRAY_JOB_ID") or env.get("SLURM_JOB_ID")


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, default=str).decode()


def _insert_columns(
    con: duckdb.DuckDBPyConnection, table: str, columns: dict[str, str], rows: list[dict[str, Any]]
) -> None:
    """Column-wise insert through unnest: ~200x faster than executemany in DuckDB."""
    if not rows:
        return
    names = list(columns)
    selects = ", ".join(
        f"CAST(unnest(?) AS {columns[c].split()[0]}) AS {c}"
        if columns[c] != "JSON"
        else f"CAST(unnest(?::VARCHAR[]) AS JSON) AS {c}"
        for c in names
    )
    con.execute(f"INSERT INTO {table} SELECT {selects}", [[r.get(c) for r in rows] for c in names])


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def _struct(columns: dict[str, str]) -> str:
    return "{" + ", ".join(f"'{c}': '{t}'" for c, t in columns.items()) + "}"


def _empty_select(columns: dict[str, str], extra: str = "") -> str:
    cols = ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t in columns.items())
    return f"SELECT {cols}{extra} WHERE false"


def _files_select(paths: list[str], columns: dict[str, str]) -> str:
    """JSONL files with fixed column types; a half-appended last line is skipped, not fatal."""
    if not paths:
        return _empty_select(columns)
    return (
        f"SELECT * FROM read_json({_sql_list(paths)}, columns={_struct(columns)}, "
        "format='newline_delimited', ignore_errors=true)"
    )


def _kind_select(con: duckdb.DuckDBPyConnection, k: Kind, files: list[tuple[str, str]]) -> str:
    """One view over all complete artifacts of a kind, JSONL and Parquet alike."""
    cols = k.columns
    jsonl = [p for fmt, p in files if fmt != "parquet"]
    parquet = [p for fmt, p in files if fmt == "parquet"]
    parts = []
    if jsonl:
        parts.append(
            f"SELECT * EXCLUDE (filename), filename AS artifact FROM read_json({_sql_list(jsonl)}, "
            f"columns={_struct(cols)}, format='newline_delimited', filename=true)"
        )
    if parquet:
        src = f"read_parquet({_sql_list(parquet)}, union_by_name=true, filename=true)"
        present = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()}
        exprs = [
            (f'CAST("{c}" AS {t}) AS "{c}"' if c in present else f'CAST(NULL AS {t}) AS "{c}"')
            for c, t in cols.items()
        ]
        parts.append(f"SELECT {', '.join(exprs)}, filename AS artifact FROM {src}")
    if not parts:
        return _empty_select(cols, ", CAST(NULL AS VARCHAR) AS artifact")
    return " UNION ALL BY NAME ".join(parts)


def _lock_timeout() -> float:
    return float(os.environ.get(LOCK_TIMEOUT_ENV, 300))


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    """Readers queue here instead of failing on DuckDB's own lock; fcntl locks also work on
    NFS and on Lustre mounted with `flock`, where a cluster's shared store lives."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + _lock_timeout()
    try:
        delay = 0.01
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EACCES, errno.EAGAIN):
                    raise
                if time.monotonic() > deadline:
                    raise RlctlError(
                        f"index lock {path} still busy after {_lock_timeout():.0f} s; "
                        f"is an 'rlctl sql' stuck? (set {LOCK_TIMEOUT_ENV} to wait longer)"
                    ) from e
                time.sleep(delay)
                delay = min(delay * 2, 0.25)
        yield
    finally:
        os.close(fd)
