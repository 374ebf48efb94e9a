"""`synth:arith`: two-digit addition, generated, for showing that training learns on a CPU.

Why this task: a model of a few hundred thousand parameters learns it in minutes on two cores,
it is verified exactly by the `math` judge (`#### N`, like GSM8K), and it cannot be gamed by
the format: there are 189 possible sums, so a model that only learned to write `#### N`
scores about 0.5%. The held-out split is disjoint from the training split (no `a + b` in test
appears in train), so a rising test score is learning to add, not memorising pairs.

Plain text, no chat: a record is `{"prompt": "58+67\n", ...}`, a base-model task, trained and
sampled with the chat template off (`chat_template: false` in configs/*/arith-tiny.yaml,
`rollout --no-chat-template`; `model tiny --no-chat-template` builds a model that refuses the
template, so a forgotten flag stops with one line instead of scoring a format it never saw).
With the bundled tokenizer a prompt and its worked answer are 6 + 22 tokens; in Qwen2.5's chat
template, with a short system turn, they were 36 + 28: the same 200-step `train sft` run takes
~30 s instead of ~75 s on this machine, and reaches a higher held-out score (0.88 against 0.69,
seed 0).

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


def worked(a: int, b: int) -> str:
    """Column addition, ones then tens with the carry: `58+67` -> `8+7=15` / `5+6+1=12`; the
    answer is then the tens line's sum followed by the ones line's last digit (125), a copy.
    Written most-significant digit first, the answer needs the whole carry chain in one token;
    a 2-layer model learned that at very different steps per seed (held-out 0.63 vs 0.10 after
    450 steps), the worked columns make each token one small step. No spaces: each would be a
    token of its own."""
    ones = a % 10 + b % 10
    carry = ones // 10
    tens = a // 10 + b // 10 + carry
    return f"{a % 10}+{b % 10}={ones}\n{a // 10}+{b // 10}+{carry}={tens}"


def records(split: str) -> Iterator[dict[str, Any]]:
    pairs = _pairs()
    chosen = pairs[:TEST_SIZE] if split == "test" else pairs[TEST_SIZE:]
    for a, b in chosen:
        total = a + b
        solution = f"{worked(a, b)}\n#### {total}"
        yield {
            "id": f"arith/{a}+{b}",
            "prompt": f"{a}+{b}\n",
            "reference": str(total),
            "source": "arith",
            "meta": {"split": split, "a": a, "b": b, "solution": solution},
        }
