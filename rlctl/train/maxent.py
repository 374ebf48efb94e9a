"""MaxEnt-GRPO, listwise (liv-daliberti/maxent-grpo, `src/maxent_grpo/` before 955c288): for
each prompt's K sampled completions, the policy is fit to the solution of

    max_π  E_π[log q] + τ·H(π) − β·KL(π ‖ π_ref)        over the K completions,

    π*(a_i | x) ∝ q_i^{1/(τ+β)} · π_ref(a_i | x)^{β/(τ+β)},

where q is the listwise target: a softmax of the completions' rewards at temperature
`q_temperature`, floored at `q_epsilon` so every completion keeps some mass
(q ← q·(1 − εK) + ε, renormalised). `length_normalize_ref` divides each completion's reference
log-probability by its length, so a long completion is not down-weighted for its length alone.
The weights are fixed targets (no gradient); the policy's distribution over the K completions
(a softmax of its sequence log-probabilities) is fit to them by cross-entropy, a weighted
maximum likelihood over the list, as the reference code's `_compute_listwise_maxent_loss` does.

One departure, on purpose: the reference code divides by τ alone (`weight_matrix_from_q`,
`denom = maxent_tau`), which is the closed form only when β = 0; here the exponent is
1/(τ+β), the maximiser of the program above (it equals theirs at β = 0). β is TRL's
`trainer.beta` (`--init-kl-coef`); it enters the targets, not a separate KL loss term.

A group must stay whole in a micro-batch, so generation batches are shuffled by whole prompt
groups, and `per_device_train_batch_size` must be a multiple of `num_generations`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

OBJECTIVES = ("grpo", "maxent-listwise")


@dataclass(frozen=True)
class MaxEnt:
    tau: float = 1.0
    q_temperature: float = 1.0
    q_epsilon: float = 1e-6
    length_normalize_ref: bool = True


def listwise_q(rewards: Any, temperature: float, epsilon: float) -> Any:
    """[groups, K] rewards -> the listwise target q: softmax(r / T), floored at ε."""
    import torch

    q = torch.softmax(rewards / max(temperature, 1e-8), dim=1)
    k = q.size(1)
    eps = min(epsilon, max(1.0 / k - 1e-8, 0.0))  # a floor above 1/K would invert the order
    if eps > 0:
        q = q * (1.0 - eps * k) + eps
        q = q / q.sum(dim=1, keepdim=True).clamp(min=1e-12)
    return q


def target_weights(q: Any, ref_logps: Any | None, tau: float, beta: float) -> Any:
    """π* over each group: softmax((log q + β·log π_ref) / (τ + β)), rows summing to 1."""
    import torch

    logits = torch.log(q.clamp(min=1e-12))
    if ref_logps is not None and beta > 0:
        logits = logits + beta * ref_logps
    return torch.softmax(logits / max(tau + beta, 1e-8), dim=1)


def listwise_loss(seq_logps: Any, weights: Any) -> Any:
    """Cross-entropy of the policy's distribution over each group's K completions (a softmax
    of their sequence log-probs) against the fixed targets: −Σ_i w_i log softmax(s)_i, the
    mean over groups. Its gradient in s is softmax(s) − w: it moves the policy to π*."""
    import torch

    return -(weights.detach() * torch.log_softmax(seq_logps, dim=1)).sum(dim=1).mean()


def entropy(p: Any) -> Any:
    """Mean entropy (nats) of the rows of a [groups, K] distribution."""
    import torch

    return -(p * torch.log(p.clamp(min=1e-12))).sum(dim=1).mean()


def check_batch(args: Any) -> None:
    """Before the model loads: a micro-batch must hold whole prompt groups."""
    from rlctl.errors import BadInput

    per_device, k = int(args.per_device_train_batch_size), int(args.num_generations)
    if per_device % k:
        raise BadInput(
            "--objective maxent-listwise needs whole prompt groups in a micro-batch: "
            f"trainer.per_device_train_batch_size ({per_device}) must be a multiple of "
            f"trainer.num_generations ({k})"
        )


def make_trainer_class() -> type:
    """The GRPOTrainer subclass, built on first use (TRL is imported only here)."""
    import torch
    from trl import GRPOTrainer

    class MaxEntGRPOTrainer(GRPOTrainer):
        """GRPO with the listwise MaxEnt loss in place of the clipped policy gradient."""

        def __init__(self, *args: Any, maxent: MaxEnt, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.maxent = maxent

        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            self._maxent_rewards = rewards  # every process's, as TRL gathers them
            return rewards

        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            mode = "train" if self.model.training else "eval"
            k = self.num_generations if mode == "train" else self.num_generations_eval
            per_func = self._maxent_rewards
            weights = self.reward_weights.to(per_func.device).unsqueeze(0)
            rewards = (per_func * weights).nansum(dim=1)
            unscorable = torch.isnan(per_func).all(dim=1)
            grouped = rewards.view(-1, k).clone()
            self._metrics[mode]["maxent/unscorable"].append(float(unscorable.sum().item()))
            if unscorable.any():  # no verdict: the group's worst reward, never a free 0
                low = grouped.masked_fill(unscorable.view(-1, k), math.inf).amin(dim=1)
                grouped = torch.where(unscorable.view(-1, k), low.unsqueeze(1), grouped)
                grouped = torch.nan_to_num(grouped, posinf=0.0)
            q = listwise_q(grouped, self.maxent.q_temperature, self.maxent.q_epsilon)
            n = out["completion_ids"].size(0)
            start = self.accelerator.process_index * n
            if start % k or n % k:
                raise RuntimeError(
                    f"maxent-listwise: this process holds {n} completions from {start}, not "
                    f"whole groups of {k}; make the per-process generation batch a multiple of "
                    "num_generations"
                )
            out["maxent_q"] = q.reshape(-1)[start : start + n]
            self._metrics[mode]["maxent/target_entropy"].append(entropy(q).item())
            return out

        def _prepare_inputs(self, generation_batch):
            """TRL's, with the generation batch shuffled by whole prompt groups."""
            if not self.model.training:
                return self._generate_and_score_completions(generation_batch)
            from trl.trainer.utils import split_tensor_dict

            generate_every = self.args.steps_per_generation * self.num_iterations
            if self._step % generate_every == 0 or self._buffered_inputs is None:
                batch = self._generate_and_score_completions(generation_batch)
                batch = _shuffle_groups(batch, self.num_generations)
                self._buffered_inputs = split_tensor_dict(batch, self.args.steps_per_generation)
            return self._buffered_inputs[self._step % self.args.steps_per_generation]

        def _compute_loss(self, model, inputs):
            mode = "train" if self.model.training else "eval"
            k = self.num_generations if mode == "train" else self.num_generations_eval
            prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
            completion_ids, mask = inputs["completion_ids"], inputs["completion_mask"]
            input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
            attention_mask = torch.cat([prompt_mask, mask], dim=1)
            per_token, entropies, _ = self._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, completion_ids.size(1), compute_entropy=True
            )
            lengths = mask.sum(dim=1).clamp(min=1.0)
            seq = (per_token * mask).sum(dim=1).view(-1, k)
            q = inputs["maxent_q"].to(seq.dtype).view(-1, k)
            ref = inputs.get("ref_per_token_logps")
            ref_seq = None
            if ref is not None and self.beta > 0:
                ref_sum = (ref * mask).sum(dim=1)
                if self.maxent.length_normalize_ref:
                    ref_sum = ref_sum / lengths
                ref_seq = ref_sum.view(-1, k)
                delta = (ref - per_token).clamp(-20, 20)
                kl = ((torch.exp(delta) - delta - 1) * mask).sum() / mask.sum().clamp(min=1.0)
                self._metrics[mode]["kl"].append(self.accelerator.gather(kl.detach()).mean().item())
            w = target_weights(q, ref_seq, self.maxent.tau, float(self.beta)).detach()
            loss = listwise_loss(seq, w)
            gather = self.accelerator.gather
            metrics = self._metrics[mode]
            metrics["maxent/tau"].append(self.maxent.tau)
            metrics["maxent/weight_entropy"].append(gather(entropy(w)).mean().item())
            metrics["maxent/policy_loss"].append(gather(loss.detach()).mean().item())
            token_entropy = (entropies * mask).sum() / mask.sum().clamp(min=1.0)
            metrics["entropy"].append(gather(token_entropy.detach()).mean().item())
            if mode == "train":
                loss = loss / self.current_gradient_accumulation_steps
            return loss

    return MaxEntGRPOTrainer


def _shuffle_groups(batch: dict[str, Any], k: int) -> dict[str, Any]:
    """Permute whole prompt groups (rows i·K..i·K+K−1 stay together and in order)."""
    import torch

    n = batch["completion_ids"].size(0)
    order = torch.randperm(n // k)
    index = (order.unsqueeze(1) * k + torch.arange(k)).reshape(-1)
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.size(0) == n:
            out[key] = value[index.to(value.device)]
        elif isinstance(value, list) and len(value) == n:
            out[key] = [value[i] for i in index.tolist()]
        else:
            out[key] = value
    return out
