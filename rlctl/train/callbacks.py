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
