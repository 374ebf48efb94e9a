"""GSM8K (openai/grade-school-math): question -> prompt, the number after `####` -> reference."""

from __future__ import annotations

from typing import Any

from rlctl.errors import BadInput
from rlctl.stages.sources.rows import need


def final_answer(solution: str) -> str | None:
    """The text after the last `####`: GSM8K's gold answer, kept verbatim (`1,600` stays)."""
    if "####" not in solution:
        return None
    return solution.rsplit("####", 1)[1].strip()


def convert(
    row: dict[str, Any], index: int, split: str, where: str, subset: str | None = None
) -> dict[str, Any]:
    question = need(row, "question", where, "GSM8K")
    solution = need(row, "answer", where, "GSM8K")
    reference = final_answer(solution)
    if not reference:
        raise BadInput(f"{where}: field 'answer': no '#### <number>' at its end; is this GSM8K?")
    return {
        "id": f"gsm8k/{split}/{index}",
        "messages": [{"role": "user", "content": question}],
        "reference": reference,
        "source": "gsm8k",
        "meta": {"split": split, "index": index, "solution": solution},
    }
