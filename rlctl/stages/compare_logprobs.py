"""`rlctl compare-logprobs`: how far the trainer's log-probabilities are from the generator's.

In RL post-training the generator (vLLM, often bf16) samples and reports logprobs; the trainer
recomputes them to form importance ratios. Any gap biases the gradient. This stage recomputes
the sampled tokens' logprobs with the trainer-side model (transformers, chosen dtype, optional
fp32 LM head, the same temperature) and measures the gap: Δ = trainer − generator per token.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rlctl.errors import BadInput
from rlctl.options import Option, defaults, precision
from rlctl.store import Run, Store

POSITION_BUCKETS = ((0, 16), (16, 64), (64, 256), (256, 1024), (1024, 1 << 30))
NEEDED = ("completion_token_ids", "completion_logprobs")


OPTIONS: dict[str, Option] = {
    "model": Option(None, "Trainer-side model (local path or hub id)"),
    **precision("Trainer", "float32"),
    "temperature": Option(
        None, "Override the records' sampling temperature", float, min=0, min_open=True
    ),
    "vs": Option(None, "A second trainer setting, e.g. fp32_lm_head=true", metavar="K=V[,K=V]"),
    "cap": Option(2.0, "Importance-ratio cap to count violations of", float, min=0, min_open=True),
    "plot": Option(None, "Histogram of Δ and Δ by position", metavar="PNG"),
    "batch_size": Option(8, "Sequences per forward pass", int, min=1),
}
DEFAULTS = defaults(OPTIONS)


@dataclass
class Setting:
    """The trainer-side configuration one column of the report is computed with."""

    name: str
    dtype: str = "float32"
    fp32_lm_head: bool = False

    def describe(self) -> str:
        return f"{self.dtype}{' + fp32 head' if self.fp32_lm_head else ''}"


def parse_vs(base: Setting, spec: str) -> Setting:
    """`--vs fp32_lm_head=true,dtype=bfloat16`: the second setting, as changes to the first."""
    out = Setting("vs", base.dtype, base.fp32_lm_head)
    for part in filter(None, spec.split(",")):
        key, _, value = part.partition("=")
        key = key.strip().replace("-", "_")
        if key == "dtype":
            out.dtype = value
        elif key == "fp32_lm_head":
            out.fp32_lm_head = value.lower() in ("1", "true", "yes", "on", "")
        else:
            raise BadInput(f"--vs {spec}: unknown key {key!r}; use dtype=... or fp32_lm_head=...")
    return out


def checked(records: Iterable[tuple[str, dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    for where, rec in records:
        for f in NEEDED:
            if not rec.get(f):
                raise BadInput(
                    f"{where}: field {f!r} missing; generate with 'rlctl rollout --logprobs'"
                )
        if rec.get("prompt_token_ids") is None:
            raise BadInput(
                f"{where}: field 'prompt_token_ids' missing; the backend gave no token ids"
            )
        if len(rec["completion_token_ids"]) != len(rec["completion_logprobs"]):
            raise BadInput(
                f"{where}: completion_token_ids and completion_logprobs differ in length"
            )
        yield rec


def temperature_of(rec: dict[str, Any], override: float | None) -> float:
    if override is not None:
        return override if override > 0 else 1.0
    t = float((rec.get("sampling") or {}).get("temperature", 1.0) or 0.0)
    return t if t > 0 else 1.0


class Recomputer:
    """Teacher-forced logprobs of the sampled tokens, batched with right padding."""

    def __init__(self, model_path: str, setting: Setting, batch_size: int = 8) -> None:
        from rlctl.backends.generation.hf import load_causal_lm

        self.model, _ = load_causal_lm(model_path, setting.dtype, setting.fp32_lm_head)
        self.batch_size = batch_size

    def logprobs(self, recs: list[dict[str, Any]], temps: list[float]) -> list[list[float]]:
        import torch

        out: list[list[float]] = []
        device = self.model.device
        for start in range(0, len(recs), self.batch_size):
            chunk = recs[start : start + self.batch_size]
            seqs = [r["prompt_token_ids"] + r["completion_token_ids"] for r in chunk]
            width = max(map(len, seqs))
            ids = torch.zeros((len(seqs), width), dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for i, s in enumerate(seqs):
                ids[i, : len(s)] = torch.tensor(s)
                mask[i, : len(s)] = 1
            with torch.inference_mode():
                logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            for i, r in enumerate(chunk):
                p, c = len(r["prompt_token_ids"]), len(r["completion_token_ids"])
                step = logits[i, p - 1 : p + c - 1].float() / temps[start + i]
                target = torch.tensor(r["completion_token_ids"], device=step.device).unsqueeze(-1)
                out.append(torch.log_softmax(step, -1).gather(-1, target).squeeze(-1).tolist())
        return out


@dataclass
class Mismatch:
    """Streaming accumulator of Δ statistics for one setting."""

    cap: float = 2.0
    deltas: list[float] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    prob_diffs: list[float] = field(default_factory=list)
    seq_sum: list[float] = field(default_factory=list)
    seq_mean: list[float] = field(default_factory=list)

    def add(self, generator: list[float], trainer: list[float]) -> list[float]:
        d = [t - g for t, g in zip(trainer, generator, strict=True)]
        self.deltas += d
        self.positions += range(len(d))
        self.prob_diffs += [
            abs(math.exp(t) - math.exp(g)) for t, g in zip(trainer, generator, strict=True)
        ]
        if d:
            self.seq_sum.append(sum(d))
            self.seq_mean.append(sum(d) / len(d))
        return d

    def summary(self) -> dict[str, float]:
        import numpy as np

        d = np.asarray(self.deltas, dtype=np.float64)
        if d.size == 0:
            raise BadInput("no completion tokens to compare")
        a = np.abs(d)
        r = np.exp(d)
        s_sum, s_mean = np.asarray(self.seq_sum), np.asarray(self.seq_mean)
        log_w = s_sum - s_sum.max()  # ESS from sequence weights exp(sum Δ), in log space
        w = np.exp(log_w)
        out = {
            "tokens": float(d.size),
            "sequences": float(s_sum.size),
            "mean_abs_delta": float(a.mean()),
            "max_abs_delta": float(a.max()),
            "std_delta": float(d.std()),
            "rms_delta": float(np.sqrt((d**2).mean())),
            "mean_delta": float(d.mean()),
            "kl_k1": float((-d).mean()),
            "kl_k3": float((r - 1 - d).mean()),
            "prob_abs_diff_mean": float(np.mean(self.prob_diffs)),
            "prob_abs_diff_max": float(np.max(self.prob_diffs)),
            "token_ratio_outside_0.9_1.1": float(((r < 0.9) | (r > 1.1)).mean()),
            f"token_ratio_outside_cap_{self.cap:g}": float(
                ((r > self.cap) | (r < 1 / self.cap)).mean()
            ),
            "seq_ratio_sum_mean": float(np.exp(s_sum).mean()),
            "seq_ratio_sum_max": float(np.exp(s_sum).max()),
            "seq_ratio_mean_mean": float(np.exp(s_mean).mean()),
            "seq_ratio_outside_0.9_1.1": float(
                ((np.exp(s_sum) < 0.9) | (np.exp(s_sum) > 1.1)).mean()
            ),
            "ess_fraction": float(w.sum() ** 2 / (w.size * (w**2).sum())),
        }
        pos = np.asarray(self.positions)
        for lo, hi in POSITION_BUCKETS:
            sel = (pos >= lo) & (pos < hi)
            if sel.any():
                out[f"mean_abs_delta_pos_{lo}_{hi if hi < 1 << 30 else 'end'}"] = float(
                    a[sel].mean()
                )
        return out

    def plot(self, path: str, title: str) -> None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise BadInput("--plot needs matplotlib: pip install 'rlctl[plot]'") from None
        fig, (h, p) = plt.subplots(1, 2, figsize=(11, 4))
        h.hist(self.deltas, bins=80, color="#4477aa")
        h.set_yscale("log")
        h.set_xlabel("Δ = trainer − generator logprob")
        h.set_ylabel("tokens")
        p.scatter(self.positions, self.deltas, s=2, alpha=0.4, color="#aa3377")
        p.set_xlabel("position in completion")
        p.set_ylabel("Δ")
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


def check_conf(conf: dict[str, Any]) -> list[Setting]:
    """The trainer-side settings to compare (the base one and `--vs`), before a run exists."""
    if not conf["model"]:
        raise BadInput("compare-logprobs needs --model (the trainer-side model)")
    base = Setting("base", conf["dtype"], bool(conf["fp32_lm_head"]))
    return [base] + ([parse_vs(base, conf["vs"])] if conf["vs"] else [])


def compare_run(
    run: Run,
    store: Store,
    conf: dict[str, Any],
    inputs: tuple[str, ...] | list[str],
    settings: list[Setting],
    output: str | None = None,
) -> tuple[dict[str, dict[str, float]], list[dict[str, Any]]]:
    """`rlctl compare-logprobs` inside its run: every sampled token's logprob recomputed under
    each setting, one `logprob_diff` record per token, the summaries as metrics and in the
    config, the plot as an artifact. Returns (summaries by setting, the rollout records)."""
    from rlctl.stages.streams import emit, open_inputs

    run.add_model(conf["model"])
    reader = open_inputs(store, run, inputs, "rollout")
    records = list(checked(reader.located()))
    temps = [temperature_of(r, conf["temperature"]) for r in records]
    stats = {s.name: Mismatch(cap=float(conf["cap"])) for s in settings}
    rows: list[dict[str, Any]] = []
    for s in settings:
        recomputed = Recomputer(conf["model"], s, int(conf["batch_size"])).logprobs(records, temps)
        for rec, trainer in zip(records, recomputed, strict=True):
            deltas = stats[s.name].add(rec["completion_logprobs"], trainer)
            for pos, (tok, g, t, d) in enumerate(
                zip(
                    rec["completion_token_ids"],
                    rec["completion_logprobs"],
                    trainer,
                    deltas,
                    strict=True,
                )
            ):
                rows.append(
                    {
                        "id": rec["id"],
                        "sample": rec.get("sample", 0),
                        "setting": s.describe(),
                        "position": pos,
                        "token_id": tok,
                        "generator_logprob": g,
                        "trainer_logprob": t,
                        "delta": d,
                    }
                )
    summaries = {s.name: stats[s.name].summary() for s in settings}
    for s in settings:
        for key, value in summaries[s.name].items():
            run.metric(f"{s.name}/{key}", value)
    run.info["config"]["summary"] = {s.describe(): summaries[s.name] for s in settings}
    emit(run, iter(rows), "logprob_diff", name="logprob_diffs", output=output)
    if conf["plot"]:
        last = settings[-1]
        stats[last.name].plot(conf["plot"], f"{conf['model']} ({last.describe()})")
        run.register_path("plot", "plot", conf["plot"], fmt="png")
    return summaries, records
