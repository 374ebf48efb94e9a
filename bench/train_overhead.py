"""Seconds per GRPO step: `rlctl train grpo` against a plain TRL script with the same
GRPOConfig, tiny model, data and reward function (target ratio <= 1.05).

Both sides report TRL's own `train_runtime` (the training loop, without process start or model
loading), so the ratio is what rlctl's wiring costs per step: the store callback, the sample
log, the reward wrappers. Wall time including start-up is shown too. With `--nproc 2` both
run as two DDP processes under torchrun (gloo on a CPU), which adds what a distributed rlctl
job pays on top: rank 0 sharing the job, the per-step stop check, the gathered samples.
Run: `.venv/bin/python bench/train_overhead.py [--steps 20] [--repeats 3] [--nproc 2]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import machine, publish, rlctl, tiny

CONFIG = {
    "max_completion_length": 32,
    "num_generations": 4,
    "per_device_train_batch_size": 4,
    "logging_steps": 1,
    "report_to": [],
    "use_cpu": True,
    "bf16": False,
    "seed": 0,
    "save_strategy": "no",
    "disable_tqdm": True,
    "log_completions": False,
}

PLAIN = """
import json, sys, time
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer
from rlctl.backends.judges import reward_function

model_dir, data, out, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rows = [json.loads(l) for l in open(data)]
ds = Dataset.from_list([{"prompt": r["messages"], "reference": r["reference"]} for r in rows])
args = GRPOConfig(output_dir=out, max_steps=steps, **json.loads(sys.argv[5]))
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32")
trainer = GRPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                      reward_funcs=[reward_function("math")])
result = trainer.train()
if trainer.accelerator.is_main_process:  # one line, not one per rank
    print(json.dumps({"train_runtime": result.metrics["train_runtime"]}))
"""


def launcher(nproc: int) -> list[str]:
    if nproc == 1:
        return [sys.executable]
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*run, "--nproc_per_node", str(nproc)]


def plain(model: Path, data: Path, d: Path, steps: int, nproc: int) -> tuple[float, float]:
    script = d / "plain_trl.py"
    script.write_text(PLAIN)
    t0 = time.perf_counter()
    out = subprocess.run(
        [
            *launcher(nproc),
            str(script),
            str(model),
            str(data),
            str(d / "plain"),
            str(steps),
            json.dumps(CONFIG),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - t0
    return json.loads(out.stdout.strip().splitlines()[-1])["train_runtime"], wall


def ours(model: Path, data: Path, store: Path, steps: int, nproc: int) -> tuple[float, float]:
    sets = []
    for k, v in CONFIG.items():
        if k not in ("save_strategy", "disable_tqdm"):
            sets += ["--set", f"trainer.{k}={json.dumps(v)}"]
    t0 = time.perf_counter()
    subprocess.run(
        [
            *([*launcher(nproc), "-m", "rlctl"] if nproc > 1 else [rlctl()]),
            "--store",
            str(store),
            "train",
            "grpo",
            "-i",
            str(data),
            "--model",
            str(model),
            "--reward",
            "math",
            "--max-steps",
            str(steps),
            *sets,
        ],
        capture_output=True,
        check=True,
    )
    wall = time.perf_counter() - t0
    from rlctl.store import Index, Store

    (runtime,) = (
        Index(Store(store))
        .query("SELECT value FROM metrics WHERE name = 'train_runtime' ORDER BY time DESC LIMIT 1")
        .rows[0]
    )
    return runtime, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--nproc", type=int, default=1, help="processes per runner (torchrun)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        model = tiny(d)
        data = d / "prompts.jsonl"
        data.write_bytes(
            subprocess.run(
                [
                    rlctl(),
                    "--store",
                    str(d / "s0"),
                    "data",
                    "pull",
                    "gsm8k",
                    "--sample",
                    "--limit",
                    "64",
                ],
                capture_output=True,
                check=True,
            ).stdout
        )
        runs = {"plain TRL script": [], "rlctl train grpo": []}
        for i in range(args.repeats):  # interleaved, so drift hits both alike
            runs["plain TRL script"].append(plain(model, data, d, args.steps, args.nproc))
            runs["rlctl train grpo"].append(
                ours(model, data, d / f"s{i + 1}", args.steps, args.nproc)
            )
    med = {
        k: (statistics.median(r for r, _ in v), statistics.median(w for _, w in v))
        for k, v in runs.items()
    }
    ratio = med["rlctl train grpo"][0] / med["plain TRL script"][0]
    procs = "" if args.nproc == 1 else f" --nproc {args.nproc}"
    lines = [
        "# Training overhead: `rlctl train grpo` vs plain TRL"
        + ("" if args.nproc == 1 else f", {args.nproc} DDP processes"),
        "",
        f"`python bench/train_overhead.py --steps {args.steps} --repeats {args.repeats}{procs}` "
        f"on {machine()}: the tiny model, 64 GSM8K prompts, GRPOConfig {json.dumps(CONFIG)}, "
        "the math reward. Medians of interleaved repeats.",
        "",
        "| runner | s per step (train loop) | train loop s | wall s (with start-up) |",
        "| --- | --- | --- | --- |",
        *(f"| {k} | {r / args.steps:.3f} | {r:.2f} | {w:.1f} |" for k, (r, w) in med.items()),
        "",
        f"Ratio rlctl / plain TRL per step: **{ratio:.3f}** (target <= 1.05).",
    ]
    if args.nproc == 1:
        step = med["plain TRL script"][0] / args.steps
        lines += [
            f"Steps take ~{step:.2f} s here, so run-to-run noise is several percent: earlier",
            "runs measured 1.076 (20 steps, 3 repeats), 0.959 and 1.045 (40 steps, 5 repeats);",
            "the default is the longer run.",
        ]
    else:
        lines += [
            "Both sides run under torchrun (gloo, one thread per process on this CPU). rlctl",
            "adds a one-number all-reduce per step (the stop check, 0.2 ms here); its samples",
            "come from TRL's own gathered log. A cProfile of rank 0 puts all rlctl callbacks",
            "at ~2 ms a step. Two processes sharing 2 cores make the ratio noisy: runs of",
            "this code measured 1.065 and 1.018; with rlctl's own sample gathers it was 1.080.",
        ]
    publish("train_overhead" if args.nproc == 1 else f"train_overhead_{args.nproc}proc", lines)


if __name__ == "__main__":
    main()
