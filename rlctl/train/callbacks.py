"""TRL/transformers callbacks that write into the store."""

from __future__ import annotations

from numbers import Number
from typing import Any

from transformers import TrainerCallback

from rlctl.store import Run


class StoreMetrics(TrainerCallback):
    """Every logged scalar becomes a metric event (step, name, value) of the run, so
    `rlctl runs tail RUN -f` and `SELECT ... FROM metrics` follow training live."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any
    ) -> None:
        for name, value in (logs or {}).items():
            if isinstance(value, Number) and not isinstance(value, bool):
                self.run.metric(name, float(value), step=state.global_step)


class AdaptiveKL(TrainerCallback):
    """Ziegler et al.'s adaptive KL controller, as GRPO recipes use it: after each logged
    step, β ← β · (1 + clip(KL / target − 1, −0.2, 0.2) · n / horizon), n = samples in the
    step. It adjusts the trainer's own `beta` (which TRL reads in every loss), never to 0."""

    def __init__(self, trainer: Any, run: Run, target: float, horizon: float) -> None:
        self.trainer, self.run = trainer, run
        self.target, self.horizon = target, horizon

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any
    ) -> None:
        kl = (logs or {}).get("kl")
        if kl is None or self.trainer.beta == 0.0:
            return
        n = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        error = min(max(float(kl) / self.target - 1.0, -0.2), 0.2)
        self.trainer.beta = max(self.trainer.beta * (1.0 + error * n / self.horizon), 1e-8)
        self.run.metric("kl_coef", self.trainer.beta, step=state.global_step)
