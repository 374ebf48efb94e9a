"""One recipe per trainer, found through a registry (like `cli.COMMANDS`): what differs
between SFT, DPO, β-DPO and GRPO lives in their own modules (`train/sft.py`, `dpo.py`,
`beta_dpo.py`, `grpo.py`), and the job around them (`stages/train.py`) and the training loop
(`train/runner.py`) never branch on the trainer's name.

A new trainer is one module with a `RECIPE` and one line in `RECIPES`; its command is one
`@train.command` in `cli/train.py`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from rlctl.store import Run
    from rlctl.train.callbacks import CheckpointState
    from rlctl.train.ranks import Job, RankView

RECIPES = {
    "sft": "rlctl.train.sft:RECIPE",
    "dpo": "rlctl.train.dpo:RECIPE",
    "beta-dpo": "rlctl.train.beta_dpo:RECIPE",
    "grpo": "rlctl.train.grpo:RECIPE",
}


def recipe(kind: str) -> Recipe:
    """The recipe of `kind` (its module imported on first use: TRL only loads when needed)."""
    module, _, attr = RECIPES[kind].partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass
class Setup:
    """A recipe's TRL config and what its `setup` built on this rank (reward functions, the
    sample or margin logs), before the model loads."""

    args: Any
    extras: dict[str, Any] = field(default_factory=dict)


class Recipe:
    """The defaults are those of a trainer on prompt records that TRL may drop rows of."""

    kind = ""
    record_kind = "prompt"  # what its inputs are read as
    # the trainer keys that make TRL take the rows in order (`--keep-order`)
    in_order: ClassVar[dict[str, Any]] = {"train_sampling_strategy": "sequential"}
    counts_rows = True  # TRL may drop or truncate rows: count them (runner.report_data)
    own_fp32_head = True  # --fp32-lm-head by rlctl's head patch (GRPO: TRL's own cast)
    trl_defaults: ClassVar[dict[str, Any]] = {}  # CPU-safe defaults beyond the shared ones

    def config_class(self) -> type:
        raise NotImplementedError

    def rows(self, located: Iterable[tuple[str, dict[str, Any]]], conf: dict[str, Any]) -> list:
        """Records (with `file:line`) -> the dataset rows the trainer takes, checked."""
        raise NotImplementedError

    def resolve(
        self, section: dict[str, Any], conf: dict[str, Any], run: Run, rows: list
    ) -> dict[str, Any]:
        """Rank 0, before any model loads: the trainer section completed from rlctl's flags."""
        return section

    def finish_job(self, job: Job, conf: dict[str, Any], run: Run) -> None:
        """Rank 0: anything else every rank needs in the job."""

    def setup(self, run: Run | RankView, conf: dict[str, Any], args: Any) -> dict[str, Any]:
        """Every rank, before the model loads: what can still be wrong fails here."""
        return {}

    def dataset_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return rows

    def truncated(self, dataset: Any, max_length: int) -> int:
        """Rows of TRL's tokenized `dataset` that `max_length` cuts (runner.report_data)."""
        return 0

    def build(
        self,
        common: dict[str, Any],
        conf: dict[str, Any],
        job: Job,
        built: Setup,
        run: Run | RankView,
        state: CheckpointState,
    ) -> Any:
        """The TRL trainer, from the arguments every trainer takes (`common`)."""
        raise NotImplementedError
