"""`rlctl store compact`: an older store's JSONL artifacts rewritten as Parquet (zstd), the
format new artifacts are stored in, so SQL over the whole history reads columns, not text.

Only complete record artifacts of ended runs are rewritten (a running run's files are its
own). Each file is converted record for record (no record is validated, changed or dropped),
published by rename, then the run.json that lists it is updated (journalled, so the index
notices) and the JSONL file removed; the runs that read it get the new path in their inputs.
A kill at any point leaves both files or one, and every run.json names a file that exists.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlctl.records.io import RecordReader, RecordWriter
from rlctl.records.schema import KINDS
from rlctl.store.layout import Store

log = logging.getLogger("rlctl")


@dataclass
class CompactReport:
    converted: list[tuple[Path, Path]] = field(default_factory=list)
    missing: list[Path] = field(default_factory=list)  # listed by a run.json, file gone
    bytes_before: int = 0
    bytes_after: int = 0


def compact(store: Store, dry_run: bool = False) -> CompactReport:
    report = CompactReport()
    moved: dict[str, str] = {}  # old absolute path -> new
    for run in list(store.iter_runs()):
        if run.get("status") == "running":
            continue
        done: list[Path] = []
        for a in run.get("artifacts") or []:
            old = store.root / a["path"]
            convert = a.get("complete") and a.get("kind") in KINDS
            if not convert or a.get("format") not in ("jsonl", "jsonl.gz"):
                continue
            if not old.is_file():
                log.warning("run %s: artifact %s is gone; left as it is", run["run_id"], old)
                report.missing.append(old)
                continue
            new = old.with_name(old.name.removesuffix(".gz").removesuffix(".jsonl") + ".parquet")
            report.bytes_before += old.stat().st_size
            report.converted.append((old, new))
            if dry_run:
                continue
            with RecordWriter(new) as w:
                w.write_all(RecordReader([str(old)]))
            report.bytes_after += new.stat().st_size
            a.update(path=str(new.relative_to(store.root)), format="parquet")
            a["bytes"] = new.stat().st_size
            moved[str(old)] = str(new)
            done.append(old)
        if done:
            store.write_run(run)  # names the Parquet files; only then the JSONL goes
            for old in done:
                old.unlink()
    if moved and not dry_run:
        _repoint_inputs(store, moved)
    return report


def _repoint_inputs(store: Store, moved: dict[str, str]) -> None:
    """Runs that read a converted file name the Parquet file now (their lineage by run id is
    unchanged)."""
    for run in store.iter_runs():
        inputs: list[dict[str, Any]] = run.get("inputs") or []
        hit = [i for i in inputs if i.get("input") in moved]
        if hit:
            for i in hit:
                i["input"] = moved[i["input"]]
            store.write_run(run)
