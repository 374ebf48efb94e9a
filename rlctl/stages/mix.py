"""`rlctl data mix`: weighted mixtures of prompt sources, and curricula that survive training.

A source is a file, a store reference (RUN, RUN:NAME, latest:X) or a `data pull` name (with
`--sample`/`--split` applied to every such name). Weights are normalised; each source's count
is its share of `--total`, rounded by largest remainder, so the realised counts are exact, not
drawn: a 0.5/0.3/0.2 mix of 20,000 is 10,000/6,000/4,000 records.

Sampling is without replacement: a source that holds fewer records than its share stops the
mix (exit 2) with its size and the ways out, never a silently smaller share. `--replace`
samples a small source with replacement, balanced: whole passes over it, each freshly
shuffled, plus a random part of one more, so every record appears ⌊share/n⌋ or ⌈share/n⌉
times; a repeat gets `#k` on its id, so ids stay unique downstream (`judge --pairs` groups by
id).

Order: shuffled (seeded) by default. `--order NAME=FILE` takes that source's records in the
order of a file of prompt ids (its curriculum); `--order-by FIELD` sorts the whole mix by a
record field (dotted: `meta.difficulty`). In an ordered mix each source keeps its own order and
the sources are interleaved evenly, so every stretch of the output holds the weights; records
carry `meta.mix.ordered`, and `train` then keeps the order (TRL shuffles by default).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlctl.errors import BadInput
from rlctl.options import Option, defaults
from rlctl.store import Run, Store

log = logging.getLogger("rlctl")

OPTIONS = {
    "sources": Option([], "NAME=WEIGHT: a file, store reference or data pull name", list, flags=()),
    "total": Option(None, "Records in the mix", int, min=1),
    "seed": Option(0, "Seed of the sampling and the shuffle", int),
    "replace": Option(
        False, "Sample a source smaller than its share with replacement (else: stop)", bool
    ),
    "sample": Option(False, "Pull known datasets from their bundled samples (offline)", bool),
    "split": Option(None, "Split of the named datasets", shown_default="each one's default"),
    "order": Option(
        [],
        "Take a source's records in the order of a file of ids (a curriculum)",
        list,
        metavar="NAME=FILE",
    ),
    "order_by": Option(None, "Order the whole mix by this record field (dotted)", metavar="FIELD"),
}
DEFAULTS = defaults(OPTIONS)


@dataclass
class Source:
    name: str
    weight: float
    records: list[dict[str, Any]] = field(default_factory=list)
    share: int = 0
    taken: list[dict[str, Any]] = field(default_factory=list)
    passes: int = 0


def parse_sources(specs: list[str]) -> list[Source]:
    out: list[Source] = []
    for spec in specs:
        name, sep, weight = str(spec).rpartition("=")
        try:
            w = float(weight) if sep else math.nan
        except ValueError:
            w = math.nan
        if not name or not math.isfinite(w) or w <= 0:
            raise BadInput(f"data mix {spec!r}: expected NAME=WEIGHT with a weight above 0")
        if any(s.name == name for s in out):
            raise BadInput(f"data mix: source {name!r} is named twice")
        out.append(Source(name, w))
    if not out:
        raise BadInput("data mix: no sources; pass NAME=WEIGHT ... (e.g. gsm8k=0.5 mbpp=0.5)")
    return out


def shares(weights: list[float], total: int) -> list[int]:
    """Each weight's share of `total`, rounded by largest remainder: they sum to `total`."""
    norm = [w / sum(weights) * total for w in weights]
    counts = [math.floor(x) for x in norm]
    left = total - sum(counts)
    by_remainder = sorted(range(len(norm)), key=lambda i: (counts[i] - norm[i], i))
    for i in by_remainder[:left]:
        counts[i] += 1
    return counts


def check_conf(conf: dict[str, Any]) -> list[Source]:
    if conf["total"] is None:
        raise BadInput("data mix needs --total N (the records in the mix)")
    sources = parse_sources(conf["sources"])
    names = {s.name for s in sources}
    for spec in conf["order"]:
        name, sep, path = str(spec).partition("=")
        if not sep or name not in names:
            raise BadInput(f"--order {spec}: expected NAME=FILE with NAME one of {sorted(names)}")
        if not Path(path).is_file():
            raise BadInput(f"--order {spec}: no such file {path}")
    if conf["order"] and conf["order_by"]:
        raise BadInput("--order and --order-by exclude each other: pick one curriculum")
    return sources


def _load(store: Store, run: Run, src: Source, conf: dict[str, Any]) -> list[dict[str, Any]]:
    """A source's records: a file or store reference (with lineage), else a `data pull`."""
    from rlctl.stages.pull import SOURCES, SYNTH_PREFIX, pull
    from rlctl.stages.streams import open_inputs

    ref = src.name
    named = ref in SOURCES or ref.startswith(SYNTH_PREFIX)
    stored = ref.startswith("latest:") or _is_run(store, ref.partition(":")[0])
    if Path(ref).exists() or (stored and not named):
        return list(open_inputs(store, run, [ref], "prompt"))
    sample = bool(conf["sample"]) and ref in SOURCES  # synth: sources are generated
    pulled = pull(ref, split=conf["split"], sample=sample, seed=int(conf["seed"]))
    if pulled.kind != "prompt":
        raise BadInput(f"data mix {ref}: it pulls {pulled.kind} records; a mix is of prompts")
    for path in pulled.files:
        run.add_input(str(Path(path).absolute()), via="file")
    return list(pulled.records)  # rlctl's own converters: emit checks every record it writes


def _is_run(store: Store, ref: str) -> bool:
    try:
        store.match_run(ref)
    except BadInput:
        return False
    return True


def _ordered(src: Source, path: str) -> list[dict[str, Any]]:
    """The source's records in the order of the id file (blank lines and #comments skipped)."""
    by_id = {str(r.get("id")): r for r in src.records}
    ids = [x.strip() for x in Path(path).read_text().splitlines()]
    ids = [x for x in ids if x and not x.startswith("#")]
    missing = [x for x in ids if x not in by_id]
    if missing:
        raise BadInput(
            f"--order {src.name}={path}: {len(missing)} ids are not in the source "
            f"(first: {missing[0]!r}); the file lists prompt ids, one per line"
        )
    if len(set(ids)) != len(ids):
        raise BadInput(f"--order {src.name}={path}: an id is listed twice")
    if len(ids) < len(src.records):
        log.warning(
            "--order %s: the file orders %d of its %d records; the mix takes only those",
            src.name, len(ids), len(src.records),
        )  # fmt: skip
    return [by_id[x] for x in ids]


def _take(src: Source, rng: random.Random, replace: bool, keep_order: bool) -> None:
    n = len(src.records)
    if n == 0:
        raise BadInput(f"data mix {src.name}: the source has no records")
    if src.share > n and not replace:
        raise BadInput(
            f"data mix {src.name}: {n} records, its share is {src.share}; pass --replace to "
            "sample it with replacement, or lower --total or its weight"
        )
    taken: list[dict[str, Any]] = []
    k = 0
    while len(taken) < src.share:
        batch = list(src.records)
        if not keep_order:
            rng.shuffle(batch)
        for rec in batch[: src.share - len(taken)]:
            taken.append(_tagged(rec, src.name, k))
        k += 1
    src.taken, src.passes = taken, k


def _tagged(rec: dict[str, Any], name: str, repeat: int) -> dict[str, Any]:
    out = dict(rec)
    if repeat:
        out["id"] = f"{rec.get('id')}#{repeat}"
    out["source"] = rec.get("source") or Path(name).name.split(".")[0]
    meta = dict(rec.get("meta") or {})
    meta["mix"] = {"source": name, "repeat": repeat}
    out["meta"] = meta
    return out


def _field(rec: dict[str, Any], dotted: str) -> Any:
    value: Any = rec
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise BadInput(
                f"--order-by {dotted}: record {rec.get('id')!r} (from "
                f"{rec['meta']['mix']['source']}) has no such field"
            )
        value = value[part]
    return value


def mix(store: Store, run: Run, conf: dict[str, Any], sources: list[Source]) -> Iterator[dict]:
    """The mixed records, in their final order; the realised counts recorded in the run."""
    rng = random.Random(int(conf["seed"]))
    orders = dict(str(s).partition("=")[::2] for s in conf["order"])
    for src, share in zip(
        sources, shares([s.weight for s in sources], int(conf["total"])), strict=True
    ):
        src.records = _load(store, run, src, conf)
        if src.name in orders:
            src.records = _ordered(src, orders[src.name])
        src.share = share
        _take(src, rng, bool(conf["replace"]), keep_order=src.name in orders)
    ordered = bool(orders or conf["order_by"])
    if conf["order_by"]:
        keyed = [(_field(r, conf["order_by"]), i, r) for i, r in enumerate(_all(sources))]
        try:
            out = [r for *_, r in sorted(keyed, key=lambda x: (x[0], x[1]))]
        except TypeError:
            raise BadInput(f"--order-by {conf['order_by']}: values of different types") from None
    elif orders:  # each source in its order, spread evenly: every stretch holds the weights
        keyed = [
            ((j + 0.5) / len(s.taken), i, rec)
            for i, s in enumerate(sources)
            for j, rec in enumerate(s.taken)
        ]
        out = [r for *_, r in sorted(keyed, key=lambda x: (x[0], x[1]))]
    else:
        out = _all(sources)
        rng.shuffle(out)
    if ordered:
        for pos, rec in enumerate(out):
            rec["meta"]["mix"].update(ordered=True, position=pos)
    _record(run, sources, conf)
    return iter(out)


def mix_run(
    run: Run, store: Store, conf: dict[str, Any], sources: list[Source], output: str | None = None
) -> int:
    """`rlctl data mix` inside its run: the mixed prompts stored and streamed, the realised
    counts per source in the run. Returns the records written."""
    from rlctl.stages.streams import emit

    n = emit(run, mix(store, run, conf, sources), "prompt", name="prompts", output=output)
    run.metric("records", n)
    return n


def mix_dry_run(
    store: Store, run: Run, conf: dict[str, Any], sources: list[Source]
) -> list[tuple[str, str]]:
    """`--dry-run`: the mix drawn as the run would draw it (each source read, each share
    checked), nothing written."""
    n = sum(1 for _ in mix(store, run, conf, sources))
    counts = ", ".join(f"{r['source']} {r['records']}/{r['available']}" for r in run.info["mix"])
    return [("mix", f"{n} records: {counts}")]


def _all(sources: list[Source]) -> list[dict[str, Any]]:
    return [r for s in sources for r in s.taken]


def _record(run: Run, sources: list[Source], conf: dict[str, Any]) -> None:
    total = sum(s.weight for s in sources)
    table = [
        {
            "source": s.name,
            "weight": round(s.weight / total, 6),
            "available": len(s.records),
            "records": len(s.taken),
            "passes": s.passes,
        }
        for s in sources
    ]
    run.info["mix"] = table
    run.save()
    for row in table:
        run.metric(f"records/{row['source']}", row["records"])
        repeated = " (with replacement)" if row["passes"] > 1 else ""
        log.info(
            "mix %s: %d of %d records, %.1f%% of the mix%s",
            row["source"], row["records"], row["available"],
            100 * row["records"] / conf["total"], repeated,
        )  # fmt: skip
