"""β-DPO (Wu et al., NeurIPS 2024): DPO with a batch-adaptive β and margin-based data filtering.

Per batch of N pairs:
  M_i  = (log πθ − log πref)(y_w) − (log πθ − log πref)(y_l)          (the margin, without β)
  M0, σ ← momentum · (M0, σ) + (1 − momentum) · (mean M, std M)         (gathered over processes;
                                                                         std unbiased; from 0)
  w_i  = exp(−½ ((M_i − M0) / σ)²)                                      (Gaussian weight)
  keep ⌊N (1 − ρ)⌋ pairs, sampled without replacement ∝ w (seeded)     (N: the global batch)
  β    = β0 · (1 + α (mean(M_kept) − M0)), clamped ≥ 1e-3, not differentiated
  loss = mean over kept pairs of −log σ(β · M_i)

With α = 0 and ρ = 0 every pair is kept and β = β0: exactly TRL's sigmoid DPO loss (tested).
This follows the authors' code (junkangwu/beta-DPO, `trainers.py`), checked against a transcription
of it in the tests: M0 and σ start at 0 and are updated before the batch is weighted, σ is the
unbiased std, and `rewards/*` are logged with β0. `stats_init="first-batch"` starts the running
statistics from the first batch's own instead (no pull towards 0 in the first ~10 steps); it is
an option, not the default, because published numbers come from the official rule.
The running statistics and the sampler's RNG are part of the checkpoint (`state_dict`), so a
resumed run continues the same β trajectory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlctl.train.dpo import DPORecipe

BETA_MIN = 1e-3
STATS_INIT = ("zero", "first-batch")


@dataclass
class MarginStats:
    momentum: float = 0.9
    init: str = "zero"  # "zero" (the official code) or "first-batch"
    mean: float | None = None
    std: float | None = None

    def __post_init__(self) -> None:
        if self.init not in STATS_INIT:
            raise ValueError(f"stats_init must be one of {', '.join(STATS_INIT)}, got {self.init}")
        if self.init == "zero" and self.mean is None:
            self.mean, self.std = 0.0, 0.0

    def update(self, margins: Any) -> tuple[float, float]:
        """Fold one batch (all processes' margins) into the running mean and std."""
        m = float(margins.mean())
        s = float(margins.std()) if margins.numel() > 1 else 0.0  # unbiased, as torch.std
        if self.mean is None or self.std is None:
            self.mean, self.std = m, s
        else:
            self.mean = self.momentum * self.mean + (1 - self.momentum) * m
            self.std = self.momentum * self.std + (1 - self.momentum) * s
        return self.mean, self.std


@dataclass
class BetaDPOLoss:
    beta0: float = 0.1
    rho: float = 0.2
    alpha: float = 0.6
    momentum: float = 0.9
    seed: int = 0
    stats_init: str = "zero"
    stats: MarginStats = field(init=False)

    def __post_init__(self) -> None:
        if not 0 <= self.rho < 1:
            raise ValueError(f"rho must be in [0, 1), got {self.rho}")
        self.stats = MarginStats(self.momentum, self.stats_init)
        self._generator: Any = None

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue the same β trajectory (plain JSON)."""
        gen = None if self._generator is None else self._generator.get_state().tolist()
        return {"mean": self.stats.mean, "std": self.stats.std, "generator": gen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import torch

        self.stats.mean, self.stats.std = state["mean"], state["std"]
        if state.get("generator") is not None:
            self._generator = torch.Generator(device="cpu")
            self._generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))

    def __call__(
        self, margins: Any, all_margins: Any | None = None, offset: int = 0
    ) -> tuple[Any, dict[str, Any]]:
        """(loss, info). `margins` carry gradients; `all_margins` are every process's batch
        (this one's at `offset`), defaulting to the local batch. The pairs are chosen from
        the whole global batch with the same seeded draw on every process, so β is the same
        everywhere and N processes train exactly as one process on their joint batch would:
        the local loss is scaled so that DDP's gradient average is the mean over all kept
        pairs."""
        import torch
        import torch.nn.functional as F

        n = margins.numel()
        everyone = (margins if all_margins is None else all_margins).detach().float()
        m0, sigma = self.stats.update(everyone)
        weights = torch.exp(-0.5 * ((everyone - m0) / max(sigma, 1e-8)) ** 2)
        total = everyone.numel()
        keep_n = max(1, int(total * (1 - self.rho)))
        mask = torch.zeros(total, dtype=torch.bool, device=margins.device)
        if keep_n >= total:
            mask[:] = True
        else:
            if self._generator is None:
                self._generator = torch.Generator(device="cpu").manual_seed(self.seed)
            probs = weights.cpu() + 1e-12  # all-zero weights would make multinomial refuse
            kept = torch.multinomial(probs, keep_n, replacement=False, generator=self._generator)
            mask[kept.to(margins.device)] = True
        beta = self.beta0 * (1 + self.alpha * (float(everyone[mask].mean()) - m0))
        beta = max(beta, BETA_MIN)
        local = mask[offset : offset + n]
        share = total / n  # the number of processes, when their batches are equal
        # mean over every process's kept pairs, once DDP averages the processes' gradients;
        # `margins.sum() * 0` keeps the graph (and DDP's all-reduce) when none is kept here
        loss = -F.logsigmoid(beta * margins[local]).sum() * share / keep_n + margins.sum() * 0
        info = {
            "beta": beta,
            "kept": int(keep_n),
            "mask": local,
            "all_mask": mask,
            "weights": weights[offset : offset + n],
            "margin_mean": float(everyone.mean()),
            "margin_std": float(everyone.std()) if total > 1 else 0.0,
            "m0": m0,
            "sigma": sigma,
        }
        return loss, info


def make_trainer_class() -> type:
    """BetaDPOTrainer, built on first use so importing rlctl never imports TRL."""
    import torch
    from trl import DPOTrainer

    class BetaDPOTrainer(DPOTrainer):
        """TRL's DPOTrainer with the β-DPO loss. The log-ratios come from exactly TRL's forward
        path (same call, same fused LM head), so α = 0, ρ = 0 reproduces TRL's sigmoid loss
        on the same batch (tested); only the standard setting is supported (no PEFT, no
        `ld_alpha`, reverse-KL DPO), and anything else is refused rather than silently wrong."""

        def __init__(
            self,
            *args: Any,
            beta_dpo: BetaDPOLoss | None = None,
            margin_log: Any = None,
            pair_ids: list[str] | None = None,
            run_id: str | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            self.beta_dpo = beta_dpo or BetaDPOLoss(beta0=self.beta)
            # rank 0's `margin_log` artifact, written and flushed every step (a preempted
            # run keeps what it logged); rows name their pair through `pair_index`
            self.margin_log = margin_log
            self.pair_ids = pair_ids or []
            self.run_id = run_id
            collate = self.data_collator

            def with_pair_index(examples: list[dict[str, Any]]) -> dict[str, Any]:
                out = collate(examples)
                if examples and "pair_index" in examples[0]:
                    out["pair_index"] = torch.tensor([e["pair_index"] for e in examples])
                return out

            self.data_collator = with_pair_index
            losses = self.args.loss_type
            losses = list(losses if isinstance(losses, list) else [losses])
            weights = self.args.loss_weights or [1.0] * len(losses)
            # the β-DPO term, optionally with TRL's SFT term (the NLL of the chosen completions,
            # as `train dpo --set 'trainer.loss_type=[sigmoid, sft]'` adds it)
            self.loss_terms = dict(zip(losses, weights, strict=True))
            unsupported = {
                "a loss_type other than [sigmoid] or [sigmoid, sft]": losses
                not in (["sigmoid"], ["sigmoid", "sft"]),
                "ld_alpha": self.ld_alpha is not None,
                "f_divergence_type != reverse_kl": self.f_divergence_type != "reverse_kl",
                "MoE aux loss": self.aux_loss_enabled,
            }
            bad = [k for k, v in unsupported.items() if v]
            if bad:
                raise ValueError(f"beta-dpo does not support {', '.join(bad)}")

        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()
            if "pair_index" not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, "pair_index"]

        def _logratios(self, model: Any, inputs: dict[str, Any]) -> tuple[Any, Any, Any]:
            """(chosen, rejected) log-ratios and the chosen completions' mean token NLL."""
            non_model = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps", "pair_index"}
            kwargs = {k: v for k, v in inputs.items() if k not in non_model}
            kwargs["use_cache"] = False
            completion_mask = inputs["completion_mask"]
            seq_len = completion_mask[..., 1:].size(1)
            labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
            per_token = model(**kwargs, labels=labels, fused_lm_head=True).log_probs[:, -seq_len:]
            logps = per_token.sum(1)
            chosen_mask = completion_mask[..., 1:].chunk(2, dim=0)[0].bool()
            nll = -per_token.chunk(2, dim=0)[0][chosen_mask].mean()
            if self.precompute_ref_logps:
                ref = torch.cat([inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]])
            else:
                with torch.no_grad():
                    out = self.ref_model(**kwargs, labels=labels, fused_lm_head=True)
                ref = out.log_probs[:, -seq_len:].sum(1)
            chosen, rejected = (logps - ref).chunk(2, dim=0)
            return chosen, rejected, nll

        def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
            if return_outputs:
                raise ValueError("beta-dpo does not return model outputs")
            mode = "train" if self.model.training else "eval"
            chosen, rejected, nll = self._logratios(model, inputs)
            margins = chosen - rejected
            all_margins = self.accelerator.gather(margins.detach())
            offset = self.accelerator.process_index * margins.numel()
            loss, info = self.beta_dpo(margins, all_margins, offset)
            loss = self.loss_terms["sigmoid"] * loss
            if "sft" in self.loss_terms:
                loss = loss + self.loss_terms["sft"] * nll
                self._metrics[mode]["beta_dpo/sft_nll"].append(float(nll.detach()))
            for key in ("beta", "kept", "margin_mean", "margin_std", "m0", "sigma"):
                self._metrics[mode][f"beta_dpo/{key}"].append(float(info[key]))
            # as the official code: rewards are logged with β0, not the batch's β
            beta0 = self.beta_dpo.beta0
            rewards_c, rewards_r = beta0 * chosen.detach(), beta0 * rejected.detach()
            self._metrics[mode]["rewards/margins"].append(float((rewards_c - rewards_r).mean()))
            self._metrics[mode]["rewards/accuracies"].append(
                float((rewards_c > rewards_r).float().mean())
            )
            if mode == "train" and (
                self.margin_log is not None or self.accelerator.num_processes > 1
            ):
                self._log_margins(inputs, all_margins, info)
            return loss

        def _log_margins(self, inputs: dict[str, Any], margins: Any, info: dict[str, Any]) -> None:
            """Every process's pairs, written once by rank 0, under the step they train in
            (the one the step's metrics carry: TRL counts a step when it ends)."""
            index = inputs.get("pair_index")
            if index is not None:
                index = self.accelerator.gather(index.to(margins.device)).tolist()
            if self.margin_log is None:  # the gather above is collective; rank 0 writes
                return
            step = self.state.global_step + 1
            kept = info["all_mask"].tolist()
            for i, m in enumerate(margins.tolist()):
                pair = None if index is None else index[i]
                self.margin_log.write(
                    {
                        "step": step,
                        "id": self.pair_ids[pair] if pair is not None else None,
                        "margin": m,
                        "kept": kept[i],
                        "beta": info["beta"],
                        "run_id": self.run_id,
                    }
                )
            self.margin_log.flush()

    return BetaDPOTrainer


class BetaDPORecipe(DPORecipe):
    """DPO's rows and config; the β-DPO loss and its per-pair margin log."""

    kind = "beta-dpo"

    def setup(self, run: Any, conf: dict[str, Any], args: Any) -> dict[str, Any]:
        from rlctl.errors import BadInput
        from rlctl.store import Run

        losses = list(args.loss_type) if isinstance(args.loss_type, list) else [args.loss_type]
        if losses not in (["sigmoid"], ["sigmoid", "sft"]):
            raise BadInput(
                f"beta-dpo computes its own sigmoid loss, optionally with TRL's SFT term; "
                f"trainer.loss_type={losses} is not that: use [sigmoid] or [sigmoid, sft], or "
                "'train dpo' (which takes any TRL loss)"
            )
        # rank 0's margin log artifact; the other ranks take part in its gathers only
        return {"margins": run.artifact("margins", "margin_log") if isinstance(run, Run) else None}

    def dataset_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**r, "pair_index": i} for i, r in enumerate(rows)]  # the margin log's pair

    def build(
        self,
        common: dict[str, Any],
        conf: dict[str, Any],
        job: Any,
        built: Any,
        run: Any,
        state: Any,
    ) -> Any:
        args = built.args
        loss = BetaDPOLoss(
            beta0=args.beta,
            rho=conf["rho"],
            alpha=conf["alpha"],
            seed=args.seed,
            stats_init=conf["stats_init"],
        )
        state.parts["beta_dpo"] = loss  # its running statistics go into every checkpoint
        return make_trainer_class()(
            **common,
            beta_dpo=loss,
            margin_log=built.extras["margins"],
            pair_ids=[r["id"] for r in job.rows],
            run_id=run.run_id,
        )


RECIPE = BetaDPORecipe()
