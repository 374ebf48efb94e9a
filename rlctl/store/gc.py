"""`rlctl store gc`: reclaim what ended runs left behind, never what a later command can use.

Always: partial artifacts (`*.partial`) and hidden temp files (`.*.tmp`) of runs that are no
longer `running`, except those of a stopped run that holds checkpoints (what it logged before
it stopped is the first part of the run `--resume` continues). With `failed=True`, also whole
failed or interrupted runs, but only those nothing can use. `interrupted` is how many useful
runs end: a training run stopped at a Slurm time limit holds the checkpoint `--resume` needs,
every stopped `serve vllm` is the record of what served a rollout, and a `data pull` cut short
by a downstream `--limit` is the root of a lineage. So a run is kept, with the reason
reported, when it saved a checkpoint, registered an endpoint, published a complete artifact,
or is an input of another run. run.json is the truth, so a removed partial artifact is also
dropped from its run.json; the index follows at the next sync.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlctl.files import is_temp
from rlctl.store.layout import Store
from rlctl.store.liveness import death_reason


@dataclass
class GCReport:
    removed: list[Path] = field(default_factory=list)
    bytes: int = 0
    kept: dict[str, str] = field(default_factory=dict)  # run id -> why it is not removed


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _checkpoints(art_dir: Path) -> list[Path]:
    """TRL's resumable `checkpoint-N` folders (and a final checkpoint) of a training run."""
    found = [p for p in (art_dir / "trainer").glob("checkpoint-*") if p.is_dir()]
    if (art_dir / "checkpoint").is_dir():
        found.append(art_dir / "checkpoint")
    return found


def keep_reason(run: dict[str, Any], art_dir: Path, used_by: dict[str, list[str]]) -> str | None:
    """Why a failed or interrupted run must stay, or None when nothing can use it."""
    ckpts = _checkpoints(art_dir)
    if ckpts:
        names = ", ".join(sorted(p.name for p in ckpts)[:3])
        return f"holds checkpoints a later --resume can use ({names})"
    if run.get("endpoint"):
        return "registered an endpoint (the record of what served its clients)"
    complete = [a["name"] for a in run.get("artifacts") or [] if a.get("complete")]
    if complete:
        return f"published complete artifacts ({', '.join(complete)})"
    children = used_by.get(run["run_id"])
    if children:
        more = f" and {len(children) - 1} more" if len(children) > 1 else ""
        return f"is an input of run {children[0]}{more} (lineage)"
    return None


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

    runs = list(store.iter_runs())
    used_by: dict[str, list[str]] = {}
    for run in runs:
        for edge in run.get("inputs") or []:
            if edge.get("run_id") and edge["run_id"] != run["run_id"]:
                used_by.setdefault(edge["run_id"], []).append(run["run_id"])
    for run in runs:
        rid = run["run_id"]
        status = run.get("status")
        if status == "running" and not death_reason(run, store.run_dir(rid)):
            continue  # alive (or not known dead yet): its temp files are in use
        art_dir = store.artifacts_dir / rid
        if failed and status in ("failed", "interrupted"):
            why = keep_reason(run, art_dir, used_by)
            if why is None:
                for path in (store.run_dir(rid), art_dir):
                    if path.exists():
                        remove(path)
                continue
            report.kept[rid] = f"{status}, kept: {why}"
        if not art_dir.exists():
            continue
        if status != "ok" and _checkpoints(art_dir):
            # what a resumable run logged before it stopped (β-DPO's margin log, the GRPO
            # samples) is the first part of the run `--resume` continues: keep it
            report.kept.setdefault(rid, f"{status}, kept: {keep_reason(run, art_dir, used_by)}")
            continue
        for path in sorted(art_dir.iterdir()):
            if path.name.endswith(".partial") or is_temp(path):
                remove(path)
        kept = [a for a in run.get("artifacts") or [] if not a["path"].endswith(".partial")]
        if len(kept) != len(run.get("artifacts") or []) and not dry_run:
            store.write_run({**run, "artifacts": kept})
    return report
