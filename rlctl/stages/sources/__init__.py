"""Datasets `rlctl data pull` knows by name: where they live on the hub, their bundled sample,
and how one original row becomes a record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rlctl.stages.sources import gsm8k, hh_rlhf, ifeval, mbpp

# (row, index, split, where, subset) -> record
Convert = Callable[[dict[str, Any], int, str, str, str | None], dict[str, Any]]


def _keep_all(row: dict[str, Any], split: str) -> bool:
    return True


@dataclass(frozen=True)
class Source:
    name: str
    kind: str
    hub_id: str
    default_split: str
    sample_file: str
    sample_split: str
    convert: Convert
    keep: Callable[[dict[str, Any], str], bool] = _keep_all
    hub_kwargs: Callable[[str | None], dict[str, Any]] = field(default=lambda subset: {})
    splits: tuple[str, ...] = ("train", "test")
    subsets: tuple[str, ...] = ()  # named in record ids: recognised in a file's name
    default_subset: str | None = None  # the hub's, when --subset is not given


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "gsm8k",
            "prompt",
            "openai/gsm8k",
            "train",
            "gsm8k-test.jsonl",
            "test",
            gsm8k.convert,
            hub_kwargs=lambda subset: {"name": subset or "main"},
        ),
        Source(
            "hh-rlhf",
            "pair",
            "Anthropic/hh-rlhf",
            "train",
            "hh-rlhf-helpful-base-test.jsonl.gz",
            "test",
            hh_rlhf.convert,
            hub_kwargs=lambda subset: {"data_dir": subset or "helpful-base"},
            subsets=hh_rlhf.SUBSETS,
            default_subset="helpful-base",
        ),
        Source(
            "mbpp",
            "prompt",
            "google-research-datasets/mbpp",
            "test",
            "mbpp-test.jsonl",
            "test",
            mbpp.convert,
            keep=mbpp.keep,
            hub_kwargs=lambda subset: {"name": subset or "full"},
            splits=("train", "test", "validation", "prompt", "all"),
        ),
        # IFEval's one split is called `train` on the hub (lm-eval scores it as its test set)
        Source(
            "ifeval",
            "prompt",
            "google/IFEval",
            "train",
            "ifeval-sample.jsonl",
            "train",
            ifeval.convert,
            splits=("train",),
        ),
    )
}
