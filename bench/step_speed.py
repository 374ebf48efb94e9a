"""How fast is this machine right now? Seconds per raw training step of the arithmetic model.

A yardstick, not a target: the 2-core machines here ran the same work 25-45% slower in some
hours than in others (docs/testing.md), so a suite or demo time means little without it. Run it
before and after a timing and quote both. The step is the learning tests' and the demo's SFT
step without TRL: the 1.6M-parameter Qwen2 (`model tiny --hidden-size 256 --heads 8`), a batch
of 32 sequences of 61 tokens (one worked sum in the chat template), forward, backward, AdamW.
Run: `.venv/bin/python bench/step_speed.py [--steps 10] [--threads N]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def seconds_per_step(steps: int, threads: int | None) -> float:
    import torch
    from transformers import AutoModelForCausalLM

    from rlctl.models.tiny import build_tiny, tiny_shape

    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        build_tiny(Path(tmp) / "arith", **tiny_shape(hidden_size=256, heads=8))
        model = AutoModelForCausalLM.from_pretrained(Path(tmp) / "arith")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(
        0, model.config.vocab_size, (32, 61), generator=torch.Generator().manual_seed(0)
    )
    for i in range(steps + 3):  # three warm-up steps
        if i == 3:
            start = time.perf_counter()
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    args = parser.parse_args()
    import torch

    s = seconds_per_step(args.steps, args.threads)
    print(f"{s:.3f} s per step ({torch.get_num_threads()} threads, {args.steps} steps)")


if __name__ == "__main__":
    main()
