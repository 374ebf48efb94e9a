"""`train dpo`: TRL's DPOTrainer on pair records, any of its losses."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rlctl.train.data import dpo_rows, prompt_format
from rlctl.train.recipe import Recipe


class DPORecipe(Recipe):
    kind = "dpo"
    record_kind = "pair"

    def config_class(self) -> type:
        from trl import DPOConfig

        return DPOConfig

    def rows(self, located: Iterable[tuple[str, dict[str, Any]]], conf: dict[str, Any]) -> list:
        return dpo_rows(located, prompt_format(conf))

    def truncated(self, dataset: Any, max_length: int) -> int:
        """The collator cuts prompt + completion at max_length (keep_start)."""
        return sum(
            len(p) + max(len(c), len(r)) > max_length
            for p, c, r in zip(
                dataset["prompt_ids"], dataset["chosen_ids"], dataset["rejected_ids"], strict=True
            )
        )

    def build(self, common: dict[str, Any], *_: Any) -> Any:
        from trl import DPOTrainer

        return DPOTrainer(**common)


RECIPE = DPORecipe()
