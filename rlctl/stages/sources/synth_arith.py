"""`synth:arith`: two-digit addition, generated, for showing that training learns on a CPU.

Why this task: a model of a few hundred thousand parameters learns it in minutes on two cores,
it is verified exactly by the `math` judge (`#### N`, like GSM8K), and it cannot be gamed by
the format: there are 189 possible sums, so a model that only learned to write `#### N`
scores about 0.5%. The held-out split is disjoint from the training split (no `a + b` in test
appears in train), so a rising test score is learning to add, not memorising pairs.

Deterministic, no download: all 8,100 pairs (a, b) with 10 <= a, b <= 99, shuffled once with a
fixed seed; the first 500 are the `test` split, the other 7,600 `train`.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

SPLITS = ("train", "test")
TEST_SIZE = 500
_SEED = 20261130  # fixed: the split must not move with --seed


def _pairs() -> list[tuple[int, int]]:
    pairs = [(a, b) for a in range(10, 100) for b in range(10, 100)]
    random.Random(_SEED).shuffle(pairs)
    return pairs


def records(split: str) -> Iterator[dict[str, Any]]:
    pairs = _pairs()
    chosen = pairs[:TEST_SIZE] if split == "test" else pairs[TEST_SIZE:]
    for a, b in chosen:
        total = a + b
        solution = f"{a} + {b} = {total}\n#### {total}"
        yield {
            "id": f"arith/{a}+{b}",
            "messages": [{"role": "user", "content": f"What is {a} + {b}?"}],
            "reference": str(total),
            "source": "arith",
            "meta": {"split": split, "a": a, "b": b, "solution": solution},
        }
