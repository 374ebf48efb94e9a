"""Scores side by side: several `eval` runs, and a published baseline table.

Rows are keyed by (task, shots, filter, metric), the things that must agree for two numbers to
be comparable; a 0-shot run never lines up with an 8-shot baseline by accident. Whatever else
differs between the runs on a row (a `--limit`, the data or its few-shot source, the backend,
the chat template, generation settings) is named in its `differs` column, so numbers that are
not like for like are never shown as if they were.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlctl.errors import BadInput

Key = tuple[str, int | None, str, str]  # task, shots, filter, metric


@dataclass
class Baseline:
    name: str
    scores: dict[Key, float] = field(default_factory=dict)


def load_baseline(path: str | Path) -> Baseline:
    """YAML (or JSON): `name`, `unit` (percent or fraction) and `scores`, a list of rows with
    task, shots, filter, metric and value."""
    from rlctl.config import load_file

    p = Path(path)
    doc = load_file(p)
    if not isinstance(doc.get("scores"), list):
        raise BadInput(f"{path}: expected a mapping with a 'scores' list (see configs/baselines/)")
    unit = doc.get("unit", "fraction")
    if unit not in ("percent", "fraction"):
        raise BadInput(f"{path}: unit {unit!r}: use percent or fraction")
    scale = 0.01 if unit == "percent" else 1.0
    base = Baseline(str(doc.get("name") or p.stem))
    for i, row in enumerate(doc["scores"], 1):
        missing = [k for k in ("task", "metric", "value") if k not in (row or {})]
        if missing:
            raise BadInput(f"{path}: scores[{i}]: missing {', '.join(missing)}")
        shots = row.get("shots")
        key = (
            str(row["task"]),
            None if shots is None else int(shots),
            str(row.get("filter", "none")),
            str(row["metric"]),
        )
        base.scores[key] = float(row["value"]) * scale
    return base


COMPARED = ("limit", "data", "backend", "apply_chat_template", "max_gen_toks", "gen_kwargs")


def table(
    scores: list[dict[str, Any]], runs: list[str], baseline: Baseline | None
) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows): one column per run (label: model and run suffix), what differs between
    the runs on that row besides the model (`limit`, the data and its few-shot source, ...),
    then the baseline and every run's difference from it, all in percent."""
    labels = {rid: f"{_model_of(scores, rid)} ({rid.rsplit('-', 1)[-1]})" for rid in runs}
    cells: dict[Key, dict[str, dict[str, Any]]] = {}
    for s in scores:
        cells.setdefault(_key(s), {})[s["run_id"]] = s
    keys = list(cells) + [k for k in (baseline.scores if baseline else {}) if k not in cells]
    cols = ["task", "shots", "filter", "metric", *(labels[r] for r in runs), "differs"]
    if baseline:
        cols += [baseline.name, *(f"Δ {labels[r]}" for r in runs)]
    rows = []
    for key in sorted(keys, key=lambda k: (k[0], k[1] if k[1] is not None else -1, k[2], k[3])):
        row: list[Any] = [*key]
        present = [cells.get(key, {}).get(rid) for rid in runs]
        row += [_pct(s["value"], s.get("stderr")) if s else "" for s in present]
        found = [s for s in present if s]
        row.append(", ".join(f for f in COMPARED if len({repr(s.get(f)) for s in found}) > 1))
        if baseline:
            ref = baseline.scores.get(key)
            row.append("" if ref is None else f"{100 * ref:.2f}")
            for s in present:
                delta = None if ref is None or not s or s["value"] is None else s["value"] - ref
                row.append("" if delta is None else f"{100 * delta:+.2f}")
        rows.append(row)
    return cols, rows


def _key(s: dict[str, Any]) -> Key:
    return (s["task"], s.get("shots"), s["filter"], s["metric"])


def _model_of(scores: list[dict[str, Any]], rid: str) -> str:
    model = next((s.get("model") for s in scores if s["run_id"] == rid), None) or "?"
    return Path(model).name or model


def _pct(value: float | None, stderr: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.2f}" + (f" ± {100 * stderr:.2f}" if stderr else "")
