"""`rlctl data pull`: a dataset's original rows -> prompt or pair records.

Three places rows come from, in this order of preference for offline clusters: `--from PATH`
(the dataset's original files), `--sample` (a small real sample inside the package), or the
Hugging Face hub through `datasets` (imported only on that path).
"""

from __future__ import annotations

import itertools
import logging
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlctl.data import SAMPLES
from rlctl.errors import BadInput
from rlctl.net import prefer_offline_hub
from rlctl.records.io import expand_sources
from rlctl.stages.sources import SOURCES
from rlctl.stages.sources.generic import convert_rows, guess_fields, kind_of, parse_fields
from rlctl.stages.sources.rows import Row, read_rows

log = logging.getLogger("rlctl")

DEFAULTS: dict[str, Any] = {
    "split": None,
    "subset": None,
    "limit": None,
    "from_path": [],
    "sample": False,
    "shuffle": False,
    "seed": 0,
    "field": {},
    "format": "jsonl",
}


@dataclass
class Pulled:
    kind: str
    records: Iterator[dict[str, Any]]
    origin: str  # what the records came from, for the run's lineage and the log
    split: str
    fields: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # the --from files, globs expanded


def _split_from_filename(path: str) -> str | None:
    m = re.search(r"(train|test|validation|valid|dev)", Path(path).name.lower())
    return {"valid": "validation", "dev": "validation"}.get(m.group(1), m.group(1)) if m else None


def hub_rows(hub_id: str, split: str, **kwargs: Any) -> Iterator[Row]:
    """Rows streamed from the hub. Any failure to reach it becomes one line pointing at --from."""
    prefer_offline_hub()
    try:
        import datasets
    except ImportError:
        raise BadInput(
            f"pulling {hub_id!r} from the hub needs the 'datasets' package: "
            "pip install 'rlctl[hub]', or pass --from PATH"
        ) from None
    try:
        ds = datasets.load_dataset(hub_id, split=split, streaming=True, **kwargs)
        it = iter(ds)
        first = next(it, None)
    except Exception as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise BadInput(
            f"cannot load {hub_id!r} (split {split}) from the Hugging Face hub: {reason}; "
            "offline? download the dataset's files and pass --from PATH"
        ) from e
    if first is None:
        return
    for i, row in enumerate(itertools.chain([first], it)):
        yield f"{hub_id}[{split}]:{i}", dict(row)


def _subset_from_filename(path: str, subsets: tuple[str, ...]) -> str | None:
    name = Path(path).name.lower()
    return next((s for s in sorted(subsets, key=len, reverse=True) if s in name), None)


def _unique_ids(records: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Several files in one pull must not repeat an id: `--pairs` and joins group by it."""
    seen: dict[str, str] = {}
    for rec in records:
        where = rec["meta"].get("file", "?")
        first = seen.get(str(rec["id"]))
        if first is not None:
            raise BadInput(
                f"{where}: id {rec['id']!r} also came from {first}; these files give the same "
                "ids (the same file twice, or subsets rlctl cannot tell apart): pull them "
                "separately, each with its own --subset"
            )
        seen[str(rec["id"])] = where
        yield rec


def pull(
    name: str,
    *,
    split: str | None = None,
    subset: str | None = None,
    limit: int | None = None,
    from_path: str | list[str] | tuple[str, ...] | None = None,
    sample: bool = False,
    shuffle: bool = False,
    seed: int = 0,
    fields: dict[str, str] | list[str] | None = None,
) -> Pulled:
    """`from_path` takes one or several files or globs; each file's split (and, for datasets
    with subsets, its subset) is read from its own name unless --split/--subset say otherwise,
    and every record says in `meta.file` which file it came from."""
    if limit is not None and limit < 0:
        raise BadInput(f"--limit {limit}: must be 0 or more")
    paths = [from_path] if isinstance(from_path, str) else list(from_path or [])
    if sample and paths:
        raise BadInput("--sample and --from exclude each other: the sample is a bundled file")
    files = expand_sources(paths)
    mapping = parse_fields(fields or {})
    src = SOURCES.get(name)
    if src is not None:
        if mapping:
            raise BadInput(f"--field is for other datasets; {name}'s fields are fixed")
        if split is not None and split not in src.splits:
            raise BadInput(f"--split {split}: {name} has {', '.join(src.splits)}")
        if sample:
            if split not in (None, src.sample_split):
                raise BadInput(f"the bundled {name} sample holds only the {src.sample_split} split")
            parts = [(str(SAMPLES / src.sample_file), src.sample_split)]
            origin = f"bundled sample {src.sample_file}"
        elif files:
            parts = [(f, split or _split_from_filename(f) or src.default_split) for f in files]
            origin = ", ".join(files)
        else:
            parts = [("", split or src.default_split)]
            origin = f"hub:{src.hub_id}"

        def known(path: str, part_split: str) -> Iterator[dict[str, Any]]:
            part_subset = subset or (
                _subset_from_filename(path, src.subsets) if path else src.default_subset
            )
            rows = (
                read_rows(path)
                if path
                else hub_rows(src.hub_id, part_split, **src.hub_kwargs(subset))
            )
            kept = ((w, r) for w, r in rows if src.keep(r, part_split))
            label = Path(path).name if len(files) > 1 else None
            for i, (w, r) in enumerate(kept):
                rec = src.convert(r, i, part_split, w, part_subset)
                if label:
                    rec["meta"]["file"] = label
                yield rec

        records = itertools.chain.from_iterable(known(p, sp) for p, sp in parts)
        kind = src.kind
    else:
        if sample:
            raise BadInput(f"no bundled sample for {name!r}; samples: {', '.join(SOURCES)}")
        if files:
            parts = [(f, split or _split_from_filename(f) or "train") for f in files]
            streams = [read_rows(f) for f in files]
            origin = ", ".join(files)
        elif "/" in name:
            parts = [("", split or "train")]
            streams = [hub_rows(name, parts[0][1], **({"name": subset} if subset else {}))]
            origin = f"hub:{name}"
        else:
            raise BadInput(
                f"unknown dataset {name!r}: use {', '.join(SOURCES)}, a hub id (org/name), "
                "or --from FILE with --field TARGET=COLUMN"
            )
        first = next(streams[0], None)
        if first is None:
            raise BadInput(f"{origin}: no rows")
        streams[0] = itertools.chain([first], streams[0])
        mapping = mapping or guess_fields(first[1])
        if not ({"messages", "prompt"} & mapping.keys()):
            raise BadInput(
                f"{first[0]}: cannot tell which column is the prompt (columns: "
                f"{', '.join(sorted(first[1]))}); pass --field prompt=COLUMN"
            )
        log.info("fields: %s", ", ".join(f"{t}={c}" for t, c in mapping.items()))

        def generic() -> Iterator[dict[str, Any]]:
            start = 0  # indices run on across files, so ids stay unique
            for (path, part_split), rows in zip(parts, streams, strict=True):
                label = Path(path).name if len(files) > 1 else None
                for rec in convert_rows(rows, name, part_split, mapping, start):
                    if label:
                        rec["meta"]["file"] = label
                    start += 1
                    yield rec

        records = generic()
        kind = kind_of(mapping)
    if len(files) > 1:
        records = _unique_ids(records)
    splits = list(dict.fromkeys(sp for _, sp in parts))
    if shuffle:
        pool = list(records)
        random.Random(seed).shuffle(pool)
        records = iter(pool)
    if limit is not None:
        records = itertools.islice(records, limit)
    return Pulled(kind, records, origin, "+".join(splits), mapping, files)
