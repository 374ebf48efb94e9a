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
from rlctl.stages.sources import SOURCES
from rlctl.stages.sources.generic import convert_rows, guess_fields, kind_of, parse_fields
from rlctl.stages.sources.rows import Row, read_rows

log = logging.getLogger("rlctl")

DEFAULTS: dict[str, Any] = {
    "split": None,
    "subset": None,
    "limit": None,
    "from_path": None,
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


def pull(
    name: str,
    *,
    split: str | None = None,
    subset: str | None = None,
    limit: int | None = None,
    from_path: str | None = None,
    sample: bool = False,
    shuffle: bool = False,
    seed: int = 0,
    fields: dict[str, str] | list[str] | None = None,
) -> Pulled:
    if limit is not None and limit < 0:
        raise BadInput(f"--limit {limit}: must be 0 or more")
    if sample and from_path:
        raise BadInput("--sample and --from exclude each other: the sample is a bundled file")
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
            split = src.sample_split
            path = SAMPLES / src.sample_file
            rows, origin = read_rows(path), f"bundled sample {src.sample_file}"
        elif from_path:
            split = split or _split_from_filename(from_path) or src.default_split
            rows, origin = read_rows(from_path), str(from_path)
        else:
            split = split or src.default_split
            rows = hub_rows(src.hub_id, split, **src.hub_kwargs(subset))
            origin = f"hub:{src.hub_id}"
        kept = ((w, r) for w, r in rows if src.keep(r, split))
        records = (src.convert(r, i, split, w) for i, (w, r) in enumerate(kept))
        kind = src.kind
    else:
        if sample:
            raise BadInput(f"no bundled sample for {name!r}; samples: {', '.join(SOURCES)}")
        if from_path:
            split = split or _split_from_filename(from_path) or "train"
            rows, origin = read_rows(from_path), str(from_path)
        elif "/" in name:
            split = split or "train"
            rows = hub_rows(name, split, **({"name": subset} if subset else {}))
            origin = f"hub:{name}"
        else:
            raise BadInput(
                f"unknown dataset {name!r}: use {', '.join(SOURCES)}, a hub id (org/name), "
                "or --from FILE with --field TARGET=COLUMN"
            )
        first = next(rows, None)
        if first is None:
            raise BadInput(f"{origin}: no rows")
        mapping = mapping or guess_fields(first[1])
        if not ({"messages", "prompt"} & mapping.keys()):
            raise BadInput(
                f"{first[0]}: cannot tell which column is the prompt (columns: "
                f"{', '.join(sorted(first[1]))}); pass --field prompt=COLUMN"
            )
        log.info("fields: %s", ", ".join(f"{t}={c}" for t, c in mapping.items()))
        records = convert_rows(itertools.chain([first], rows), name, split, mapping)
        kind = kind_of(mapping)
    if shuffle:
        pool = list(records)
        random.Random(seed).shuffle(pool)
        records = iter(pool)
    if limit is not None:
        records = itertools.islice(records, limit)
    return Pulled(kind, records, origin, split, mapping)
