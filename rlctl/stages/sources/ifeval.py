"""IFEval: a prompt with verifiable instructions -> prompt record whose `reference` holds the
instructions (IFEval's own fields, as JSON text), the form `--judge ifeval` checks."""

from __future__ import annotations

from typing import Any

from rlctl.backends.judges.ifeval import reference_of
from rlctl.stages.sources.rows import need


def convert(
    row: dict[str, Any], index: int, split: str, where: str, subset: str | None = None
) -> dict[str, Any]:
    key = need(row, "key", where, "IFEval", int)
    prompt = need(row, "prompt", where, "IFEval")
    ids = need(row, "instruction_id_list", where, "IFEval", list)
    kwargs = need(row, "kwargs", where, "IFEval", list)
    return {
        "id": f"ifeval/{key}",
        "messages": [{"role": "user", "content": prompt}],
        "reference": reference_of(row),
        "source": "ifeval",
        "meta": {"split": split, "key": key, "instruction_id_list": ids, "kwargs": kwargs},
    }
