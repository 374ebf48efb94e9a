"""`train sft`: TRL's SFTTrainer on prompt + completion rows or whole conversations."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from rlctl.errors import BadInput
from rlctl.train.data import prompt_format, sft_rows
from rlctl.train.recipe import Recipe

log = logging.getLogger("rlctl")


class SFTRecipe(Recipe):
    kind = "sft"

    def config_class(self) -> type:
        from trl import SFTConfig

        return SFTConfig

    def rows(self, located: Iterable[tuple[str, dict[str, Any]]], conf: dict[str, Any]) -> list:
        return sft_rows(located, conf["target"], prompt_format(conf))

    def truncated(self, dataset: Any, max_length: int) -> int:
        return sum(len(ids) >= max_length for ids in dataset["input_ids"])

    def resolve(
        self, section: dict[str, Any], conf: dict[str, Any], run: Any, rows: list
    ) -> dict[str, Any]:
        if rows and "messages" in rows[0]:
            section.setdefault(
                "assistant_only_loss",
                assistant_only_loss(conf["model"], conf.get("chat_template_file")),
            )
        return section

    def build(self, common: dict[str, Any], *_: Any) -> Any:
        from trl import SFTTrainer

        return SFTTrainer(**common)


def assistant_only_loss(model: str, template_file: str | None = None) -> bool:
    """Loss on the assistant turns only, when the chat template allows it: it marks them
    (`{% generation %}`), or TRL ships a training version of it (Qwen, Llama, Gemma, ...).
    Otherwise every token, and the log says so."""
    from transformers import AutoTokenizer
    from trl.chat_template_utils import get_training_chat_template

    from rlctl.backends.generation import read_chat_template
    from rlctl.models import require_model_path

    require_model_path(model)
    try:
        tok = AutoTokenizer.from_pretrained(model)
        if template_file:
            tok.chat_template = read_chat_template(template_file)
        get_training_chat_template(tok)
    except (ValueError, TypeError) as e:
        log.warning(
            "sft on whole conversations: loss on every token (%s); set "
            "trainer.assistant_only_loss after adding {%% generation %%} markers",
            str(e).split(" (")[0],
        )
        return False
    except OSError as e:
        raise BadInput(f"--model {model}: cannot load its tokenizer ({e})") from e
    return True


RECIPE = SFTRecipe()
