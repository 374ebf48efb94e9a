"""Does training learn? `synth:arith` (two-digit addition) on a tiny model, per seed: held-out
exact match of the base model, after `train sft` from scratch, and after `train grpo` from the
SFT checkpoint, with steps and wall seconds; and GRPO's mean training reward in its first and
last tenth of steps. Every step is a normal rlctl command recorded in a throwaway store.

Run: `.venv/bin/python bench/learning.py [--seeds 0 1]` (~5 min a seed on 2 cores). Writes
docs/bench/learning.md and docs/bench/learning.png (GRPO reward per step, one line a seed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from report import ROOT, machine, publish, rlctl

SFT_STEPS, GRPO_STEPS = 450, 150
SFT = [
    "--target", "meta.solution", "--set", "trainer.learning_rate=1e-3",
    "--set", "trainer.warmup_steps=20", "--set", "trainer.per_device_train_batch_size=32",
]  # fmt: skip
GRPO = [
    "--reward", "math", "--set", "trainer.num_generations=8",
    "--set", "trainer.per_device_train_batch_size=64", "--set", "trainer.max_completion_length=24",
    "--set", "trainer.learning_rate=5e-5",
]  # fmt: skip


def run(store: Path, *args: str, stdin: bytes | None = None) -> bytes:
    out = subprocess.run(
        [rlctl(), "--store", str(store), *args],
        input=stdin,
        capture_output=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": str(Path(rlctl()).parent)},
    )
    if out.returncode != 0:
        raise SystemExit(out.stderr.decode()[-3000:])
    return out.stdout


def checkpoint(store: Path, command: str) -> str:
    rows = run(
        store, "sql", "--csv",
        "SELECT a.path FROM artifacts a JOIN runs r USING (run_id) WHERE r.command = "
        f"'{command}' AND a.kind = 'model' ORDER BY r.started_at DESC LIMIT 1",
    ).decode().split()  # fmt: skip
    return rows[-1]


def held_out(store: Path, model: str) -> float:
    prompts = run(store, "data", "pull", "synth:arith", "--split", "test")
    rollouts = run(
        store, "rollout", "--model", model, "--temperature", "0", "--max-tokens", "24",
        stdin=prompts,
    )  # fmt: skip
    judged = [
        json.loads(x)
        for x in run(store, "judge", "--judge", "math", stdin=rollouts).split(b"\n")
        if x
    ]
    return sum(j["reward"] or 0.0 for j in judged) / len(judged)


def timed(store: Path, *args: str, stdin: bytes) -> float:
    t = time.monotonic()
    run(store, *args, stdin=stdin)
    return time.monotonic() - t


def one_seed(seed: int, root: Path) -> dict:
    store, base = root / f"store-{seed}", root / f"base-{seed}"
    run(
        store,
        "model",
        "tiny",
        str(base),
        "--hidden-size",
        "256",
        "--heads",
        "8",
        "--seed",
        str(seed),
    )
    train = run(store, "data", "pull", "synth:arith", "--shuffle", "--seed", str(seed))
    sft_s = timed(
        store, "train", "sft", "--model", str(base), "--max-steps", str(SFT_STEPS), *SFT,
        "--set", f"trainer.seed={seed}", stdin=train,
    )  # fmt: skip
    sft = checkpoint(store, "train sft")
    prompts = run(
        store,
        "data",
        "pull",
        "synth:arith",
        "--shuffle",
        "--seed",
        str(seed + 1),
        "--limit",
        "2000",
    )
    grpo_s = timed(
        store, "train", "grpo", "--model", sft, "--max-steps", str(GRPO_STEPS), *GRPO,
        "--set", f"trainer.seed={seed}", stdin=prompts,
    )  # fmt: skip
    grpo = checkpoint(store, "train grpo")
    rows = [
        json.loads(x)
        for x in run(
            store,
            "sql",
            "--json",
            "SELECT step, avg(reward) AS r FROM train_samples GROUP BY 1 ORDER BY 1",
        ).splitlines()
        if x.strip()
    ]
    curve = [(r["step"], r["r"]) for r in rows]
    tenth = max(1, len(curve) // 10)
    return {
        "seed": seed,
        "base": held_out(store, str(base)),
        "sft": held_out(store, sft),
        "grpo": held_out(store, grpo),
        "sft_s": sft_s,
        "grpo_s": grpo_s,
        "first": sum(r for _, r in curve[:tenth]) / tenth,
        "last": sum(r for _, r in curve[-tenth:]) / tenth,
        "curve": curve,
    }


def plot(results: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for r in results:
        steps = [s for s, _ in r["curve"]]
        values = [v for _, v in r["curve"]]
        windows = [values[max(0, i - 9) : i + 1] for i in range(len(values))]
        ax.plot(steps, [sum(w) / len(w) for w in windows], label=f"seed {r['seed']} (10-step mean)")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean reward (math)")
    ax.set_title("synth:arith: GRPO from the SFT checkpoint")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rlctl-learning-") as tmp:
        results = [one_seed(s, Path(tmp)) for s in args.seeds]
    plot(results, ROOT / "docs" / "bench" / "learning.png")
    lines = [
        "# Training that learns: synth:arith on a tiny model",
        "",
        f"`python bench/learning.py --seeds {' '.join(map(str, args.seeds))}` on {machine()}.",
        "`model tiny --hidden-size 256 --heads 8 --seed S` (1.6M parameters); held-out = greedy "
        "exact match on the 500 `test` sums no training step saw (`rollout | judge --judge "
        f"math`). SFT: {SFT_STEPS} steps, batch 32, lr 1e-3. GRPO from the SFT checkpoint: "
        f"{GRPO_STEPS} steps of 8 prompts x 8 samples, lr 5e-5, math reward.",
        "",
        "| seed | base | SFT | GRPO | SFT wall s | GRPO wall s | GRPO reward, first → last tenth |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *(
            f"| {r['seed']} | {r['base']:.3f} | {r['sft']:.3f} | {r['grpo']:.3f} | "
            f"{r['sft_s']:.0f} | {r['grpo_s']:.0f} | {r['first']:.3f} → {r['last']:.3f} |"
            for r in results
        ),
        "",
        "![GRPO reward per step](learning.png)",
    ]
    publish("learning", lines)


if __name__ == "__main__":
    main()
