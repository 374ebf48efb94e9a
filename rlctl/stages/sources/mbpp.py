"""MBPP: a task description and its test asserts -> prompt record with the asserts as
`reference`, the form `rlctl judge --judge code` runs them in."""

from __future__ import annotations

from typing import Any

from rlctl.stages.sources.rows import need

# Upstream splits are task-id ranges (google-research/mbpp README).
SPLITS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974)}


def split_of(task_id: int) -> str | None:
    return next((s for s, (lo, hi) in SPLITS.items() if lo <= task_id <= hi), None)


def keep(row: dict[str, Any], split: str) -> bool:
    """A file with every split (mbpp.jsonl) is filtered by task id; `all` keeps everything."""
    return split == "all" or split_of(int(row.get("task_id", 0))) == split


def convert(
    row: dict[str, Any], index: int, split: str, where: str, subset: str | None = None
) -> dict[str, Any]:
    task_id = need(row, "task_id", where, "MBPP", int)
    # mbpp.jsonl calls the description `text`; sanitized-mbpp.json calls it `prompt`.
    text = row["text"] if "text" in row else need(row, "prompt", where, "MBPP")
    tests = need(row, "test_list", where, "MBPP", list)
    setup = [row.get("test_setup_code") or "", *row.get("test_imports", [])]
    reference = "\n".join([*(s for s in setup if s), *tests])
    prompt = (
        f"You are an expert Python programmer, and here is your task: {text} "
        f"Your code should pass these tests:\n\n" + "\n".join(tests)
    )
    return {
        "id": f"mbpp/{task_id}",
        "messages": [{"role": "user", "content": prompt}],
        "reference": reference,
        "source": "mbpp",
        "meta": {
            "split": split_of(task_id) or split,
            "task_id": task_id,
            "text": text,
            "tests": tests,
            "test_setup_code": row.get("test_setup_code") or "",
            "solution": row.get("code"),
            "challenge_tests": row.get("challenge_test_list") or [],
        },
    }
