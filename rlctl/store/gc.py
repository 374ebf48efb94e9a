"""`rlctl store gc`: reclaim what ended runs left behind, never what a live run is writing.

Partial artifacts (`*.partial`) and hidden temp files (`.*.tmp`) of runs that are no longer
`running`, and with `failed=True` whole failed or interrupted runs. run.json is the truth, so a
removed partial artifact is also dropped from its run.json; the index follows at the next sync.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from rlctl.store.layout import Store, atomic_write_json
from rlctl.store.liveness import death_reason


@dataclass
class GCReport:
    removed: list[Path] = field(default_factory=list)
    bytes: int = 0


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def gc(store: Store, *, failed: bool = False, dry_run: bool = False) -> GCReport:
    report = GCReport()

    def remove(path: Path) -> None:
        report.removed.append(path)
        report.bytes += _size(path)
        if not dry_run:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()

    for run in list(store.iter_runs()):
        rid = run["run_id"]
        status = run.get("status")
        if status == "running" and not death_reason(run, store.run_dir(rid)):
            continue  # alive (or not known dead yet): its temp files are in use
        art_dir = store.artifacts_dir / rid
        if failed and status in ("failed", "interrupted"):
            for path in (store.run_dir(rid), art_dir):
                if path.exists():
                    remove(path)
            continue
        if not art_dir.exists():
            continue
        for path in sorted(art_dir.iterdir()):
            if path.name.endswith(".partial") or (
                path.name.startswith(".") and path.name.endswith(".tmp")
            ):
                remove(path)
        kept = [a for a in run.get("artifacts") or [] if not a["path"].endswith(".partial")]
        if len(kept) != len(run.get("artifacts") or []) and not dry_run:
            atomic_write_json(store.run_json(rid), {**run, "artifacts": kept})
    return report
