"""Streaming record IO: JSONL (plain or gzip) and Parquet, from files, globs or stdin.

Reading is one record at a time (Parquet in row batches), so memory stays flat however large the
input. Every problem is reported with its source and line, because the user's next move is to
open that file at that line.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from rlctl.errors import BadInput
from rlctl.files import temp_name
from rlctl.records.schema import Kind, validate
from rlctl.records.schema import kind as kind_by_name

STDIN = "-"
ABSENT_COLUMN = "_rlctl_absent"  # per row: the file's columns this record did not have
PARQUET_JSON_KEY = "rlctl.json_columns"
_BATCH = 1024


def record_format(path: str | Path) -> str:
    """`jsonl`, `jsonl.gz` or `parquet`, from the file name."""
    name = str(path).lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".gz"):
        return "jsonl.gz"
    return "jsonl"


def expand_sources(sources: Sequence[str | Path]) -> list[str]:
    """Expand globs, keep `-`, and fail early on a missing path so no run starts on a typo."""
    out: list[str] = []
    for src in sources:
        s = str(src)
        if s == STDIN:
            out.append(s)
        elif glob.has_magic(s):
            matches = sorted(p for p in glob.glob(s) if Path(p).is_file())
            if not matches:
                raise BadInput(f"no file matches {s!r}; check the pattern (quote it in the shell)")
            out.extend(matches)
        elif Path(s).is_dir():
            raise BadInput(f"{s}: is a directory; give a file or a glob such as '{s}/*.jsonl'")
        elif not Path(s).exists():
            raise BadInput(f"{s}: no such file")
        else:
            try:
                with open(s, "rb") as f:
                    f.read(1)
            except OSError as e:
                raise BadInput(f"{s}: cannot read it ({e.strerror}); check its permissions") from e
            out.append(s)
    return out


class RecordReader:
    """Iterates the records of several sources in order, validating each against a kind.

    After (or during) iteration, `parent_run_ids` holds every `run_id` seen: that is how lineage
    survives a pipe. `on_stdin_eof` lets the store check, once stdin ends, that the process that
    fed it finished cleanly (a killed upstream also just closes the pipe).
    """

    def __init__(
        self,
        sources: Sequence[str | Path],
        kind: Kind | str | None = None,
        *,
        allow_empty: bool = False,
        stdin: IO[bytes] | None = None,
        on_stdin_eof: Callable[[set[str]], None] | None = None,
    ) -> None:
        self.sources = expand_sources(sources)
        self.kind = kind_by_name(kind) if isinstance(kind, str) else kind
        self.allow_empty = allow_empty
        self._stdin = stdin
        self._on_stdin_eof = on_stdin_eof
        self.parent_run_ids: set[str] = set()
        self.count = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for _, rec in self.located():
            yield rec

    def located(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Like iteration, with each record's `file:line` for errors found downstream."""
        for src in self.sources:
            n_before = self.count
            rows = _read_parquet(src) if record_format(src) == "parquet" else self._jsonl(src)
            for where, rec in rows:
                if self.kind is not None:
                    problem = validate(rec, self.kind)
                    if problem:
                        field, msg = problem
                        at = f"field {field!r}: " if field else ""
                        raise BadInput(
                            f"{where}: {at}{msg}; fix the record "
                            f"(the {self.kind.name} format is in docs/records.md)"
                        )
                run_id = rec.get("run_id") if isinstance(rec, dict) else None
                if isinstance(run_id, str):
                    self.parent_run_ids.add(run_id)
                self.count += 1
                yield where, rec
            if src == STDIN and self._on_stdin_eof is not None:
                self._on_stdin_eof(self.parent_run_ids)
            if self.count == n_before and not self.allow_empty:
                name = "stdin" if src == STDIN else src
                raise BadInput(f"{name}: no records (empty input); give a file with records")

    def _jsonl(self, src: str) -> Iterator[tuple[str, dict[str, Any]]]:
        name = "<stdin>" if src == STDIN else src
        if src == STDIN:
            raw: IO[bytes] = self._stdin or sys.stdin.buffer
            stream = _maybe_gunzip(raw)
        else:
            stream = _maybe_gunzip(open(src, "rb"))  # noqa: SIM115 (closed below)
        lineno = 0
        try:
            for lineno, line in enumerate(stream, 1):
                if not line.strip():
                    continue
                try:
                    rec = orjson.loads(line)
                    if _LONG_DIGITS.search(line):
                        # orjson reads an integer past 64 bits as a rounded float; the
                        # standard parser keeps it exact, so validation can refuse it
                        rec = json.loads(line)
                except (orjson.JSONDecodeError, ValueError) as e:
                    raise BadInput(f"{name}:{lineno}: {_json_problem(line, e)}") from e
                if not isinstance(rec, dict):
                    raise BadInput(
                        f"{name}:{lineno}: expected one JSON object per line, got "
                        f"{type(rec).__name__}; records are JSONL (docs/records.md)"
                    )
                yield f"{name}:{lineno}", rec
        except (EOFError, OSError, zlib.error) as e:
            if isinstance(e, BrokenPipeError):
                raise
            raise BadInput(f"{name}:{lineno + 1}: cannot read ({e}); is the gzip complete?") from e
        finally:
            if src != STDIN:
                stream.close()


_LONG_DIGITS = re.compile(rb"\d{19}")


def _maybe_gunzip(f: IO[bytes]) -> IO[bytes]:
    """Gzip is detected from the magic bytes, so a `.jsonl` that is really gzip (or stdin) works."""
    buffered = f if isinstance(f, io.BufferedReader) else io.BufferedReader(f)  # type: ignore[arg-type]
    if buffered.peek(2)[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=buffered)  # type: ignore[return-value]
    return buffered


def _json_problem(line: bytes, e: Exception) -> str:
    try:
        line.decode("utf-8")
        binary = b"\x00" in line
    except UnicodeDecodeError:
        binary = True
    if binary:
        return "not UTF-8 text (binary data?); records must be UTF-8 JSON lines"
    text = line.rstrip(b"\r\n")
    if not text.lstrip().startswith(b"{"):
        return "not a JSON object; each line must be one JSON object"
    if not text.rstrip().endswith(b"}"):
        return "truncated JSON (the line ends early); was the file cut off while written?"
    return f"invalid JSON ({str(e).split(':', 1)[0]}); each line must be one JSON object"


def _read_parquet(path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    import duckdb

    con = duckdb.connect()
    try:
        try:
            meta = con.execute(
                "SELECT value FROM parquet_kv_metadata(?) WHERE decode(key) = ?",
                [path, PARQUET_JSON_KEY],
            ).fetchone()
            cur = con.execute("SELECT * FROM read_parquet(?)", [path])
        except duckdb.Error as e:
            raise BadInput(f"{path}: not a readable Parquet file ({e}); check the file") from e
        json_cols = set(orjson.loads(meta[0])) if meta else set()
        names = [d[0] for d in cur.description]
        # files rlctl wrote list each record's absent keys, so a null value (a judge's
        # unreadable verdict: reward null) survives; in other files a null means absent
        exact = ABSENT_COLUMN in names
        row_no = 0
        while batch := cur.fetchmany(_BATCH):
            for row in batch:
                row_no += 1
                values = dict(zip(names, row, strict=True))
                absent = set(orjson.loads(values.pop(ABSENT_COLUMN) or "[]")) if exact else set()
                rec = {
                    k: (orjson.loads(v) if k in json_cols and v is not None else v)
                    for k, v in values.items()
                    if k not in absent and (exact or v is not None)
                }
                yield f"{path}:row {row_no}", rec
    finally:
        con.close()


def dumps(record: dict[str, Any]) -> bytes:
    """One JSONL line. Non-JSON values (numpy scalars, paths) fall back to str, never crash."""
    return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY, default=str) + b"\n"


class RecordWriter:
    """Writes one record file atomically: a hidden temp name, renamed only when closed with
    success. A failed writer leaves `<name>.partial`, which no reader mistakes for output.

    A target that exists and is not a regular file (a FIFO, /dev/stdout, a device) is written
    in place instead: renaming over it would replace the device node itself.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.format = record_format(self.path)
        self.in_place = self.path.exists() and not self.path.is_file()
        if self.in_place:
            scratch = Path(tempfile.mkdtemp(prefix="rlctl-"))
            self._tmp = scratch / f"out.{self.format}"
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = temp_name(self.path)
        parquet = self.format == "parquet"
        # streamed as JSONL, converted at close; a suffix keeps it a temp name (rlctl.files)
        self._jsonl_tmp = (
            self._tmp.with_name(self._tmp.name + ".jsonl.tmp") if parquet else self._tmp
        )
        sink = self._jsonl_tmp if parquet or not self.in_place else self.path
        raw = open(sink, "wb")  # noqa: SIM115 (closed in close())
        self._f: IO[bytes] = (
            gzip.GzipFile(fileobj=raw, mode="wb") if self.format == "jsonl.gz" else raw
        )
        self._raw = raw
        self._types: dict[str, set[type]] = {}
        self._keys: set[str] = set()
        self.count = 0
        self.closed = False

    def write(self, record: dict[str, Any]) -> None:
        if self.format == "parquet":
            self._keys.update(record)
            for k, v in record.items():
                if v is not None:
                    self._types.setdefault(k, set()).add(type(v))
        self._f.write(dumps(record))
        self.count += 1

    def write_all(self, records: Iterable[dict[str, Any]]) -> None:
        for r in records:
            self.write(r)

    def flush(self) -> None:
        """Push what was written to the file, so a process killed next loses none of it (a
        log that must survive preemption flushes after every step)."""
        self._f.flush()
        if self._raw is not self._f:
            self._raw.flush()

    def close(self, ok: bool = True) -> Path:
        """Publish the file (ok) or set it aside as `.partial`; returns where it ended up."""
        if self.closed:
            return self.path
        self.closed = True
        self._f.close()
        if self._raw is not self._f:
            self._raw.close()
        if ok and self.format == "parquet":
            as_json = sorted(k for k, ts in self._types.items() if len(ts) > 1 or ts & {dict, list})
            columns = {k: _SQL_TYPES.get(next(iter(self._types.get(k) or {str})), "VARCHAR")
                       for k in sorted(self._keys)}  # fmt: skip
            columns.update(dict.fromkeys(as_json, "VARCHAR"))  # JSON text
            _jsonl_to_parquet(self._jsonl_tmp, self._tmp, as_json, self._keys, columns)
            self._jsonl_tmp.unlink()
        if self.in_place:
            if ok and self.format == "parquet":
                with open(self._tmp, "rb") as src, open(self.path, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            shutil.rmtree(self._tmp.parent, ignore_errors=True)
            return self.path
        final = self.path if ok else self.path.with_name(self.path.name + ".partial")
        if not ok and self.format == "parquet":  # what was written is JSONL: named so
            final = self.path.with_name(self.path.name.removesuffix(".parquet") + ".jsonl.partial")
        os.replace(self._tmp if ok else self._jsonl_tmp, final)
        return final

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.close(ok=exc_type is None)


# Parquet column types from the Python types a writer saw: given, never inferred (DuckDB would
# read a column of date-like strings as DATE, and the records would come back changed)
_SQL_TYPES = {str: "VARCHAR", bool: "BOOLEAN", int: "BIGINT", float: "DOUBLE"}


def _jsonl_to_parquet(
    src: Path, dst: Path, nested: list[str], keys: set[str], columns: dict[str, str]
) -> None:
    """Nested and mixed-type values become JSON text (listed in the file's metadata, decoded
    on read), so free-form fields such as `meta` round-trip exactly instead of being widened to
    structs or cast to one type. A record without some of the file's columns lists them in
    `ABSENT_COLUMN`, so a key set to null and a key not there read back as they were."""
    import duckdb

    encoded = src.with_name(src.name + ".enc.tmp")
    with open(src, "rb") as fin, open(encoded, "wb") as fout:
        for line in fin:
            rec = orjson.loads(line)
            for k in nested:
                if rec.get(k) is not None:
                    rec[k] = orjson.dumps(rec[k]).decode()
            missing = keys.difference(rec)
            rec[ABSENT_COLUMN] = orjson.dumps(sorted(missing)).decode() if missing else None
            fout.write(dumps(rec))
    struct = (
        "{"
        + ", ".join(
            f"'{_sql_quote(k)}': '{t}'" for k, t in {**columns, ABSENT_COLUMN: "VARCHAR"}.items()
        )
        + "}"
    )
    con = duckdb.connect()
    try:
        meta = orjson.dumps(nested).decode().replace("'", "''")
        con.execute(
            f"COPY (SELECT * FROM read_json(?, format='newline_delimited', columns={struct})) "
            f"TO '{_sql_str(dst)}' "
            f"(FORMAT parquet, COMPRESSION zstd, KV_METADATA {{'{PARQUET_JSON_KEY}': '{meta}'}})",
            [str(encoded)],
        )
    finally:
        con.close()
        encoded.unlink()


def _sql_quote(text: str) -> str:
    return text.replace("'", "''")


def _sql_str(p: Path) -> str:
    return str(p).replace("'", "''")


class StreamWriter:
    """Records to a pipe. Flushes at most every `flush_every` seconds so a slow producer (a
    rollout) still feeds the next stage promptly, and a fast one is not slowed by syscalls."""

    def __init__(self, stream: IO[bytes], flush_every: float = 0.2) -> None:
        self._stream = stream
        self._flush_every = flush_every
        self._last = time.monotonic()
        self.count = 0

    def write(self, record: dict[str, Any]) -> None:
        self._stream.write(dumps(record))
        self.count += 1
        now = time.monotonic()
        if now - self._last >= self._flush_every:
            self._stream.flush()
            self._last = now

    def close(self, ok: bool = True) -> None:
        self._stream.flush()
