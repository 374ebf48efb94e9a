"""`rm`: a reward model (`AutoModelForSequenceClassification`, one logit) scoring
prompt + completion, batched.

The text is what the reward model was trained on: the chat template over the messages plus the
completion as the assistant turn when the tokenizer has one, else prompt + completion. Batches
are sorted by length so padding is small; the score of a record does not depend on what it was
batched with (a test holds it to that).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rlctl.backends.judges.base import Score, completion_text
from rlctl.errors import BadInput
from rlctl.models.paths import require_model_path


class RewardModelJudge:
    @classmethod
    def from_options(cls, o: dict[str, Any]) -> RewardModelJudge:
        """From its `judge.rm` section, which must name the reward model."""
        if not o["model"]:
            raise BadInput(
                "--judge rm needs a reward model: --rm-model PATH (rlctl judge), or "
                "judge.rm.model (train grpo: --set judge.rm.model=PATH)"
            )
        return cls(o["model"], batch_size=int(o["batch_size"] or 16))

    def __init__(self, path: str, batch_size: int = 16, max_length: int = 4096) -> None:
        from rlctl.net import prefer_offline_hub

        prefer_offline_hub()
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        require_model_path(path, "--rm-model")
        try:
            self.tok = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForSequenceClassification.from_pretrained(path)
        except (OSError, ValueError) as e:
            raise BadInput(
                f"--rm-model {path}: cannot load a reward model ({str(e).splitlines()[0]})"
            ) from e
        if self.model.config.num_labels != 1:
            labels = self.model.config.num_labels
            raise BadInput(f"--rm-model {path}: has {labels} labels; a reward model has 1")
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.model.config.pad_token_id = self.tok.pad_token_id
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(self.device).eval()
        self.torch = torch
        self.batch_size = batch_size
        self.max_length = max_length
        self.path = path
        self.name = "rm"

    def text(self, rec: dict[str, Any]) -> str:
        completion = completion_text(rec.get("completion"))
        messages = rec.get("messages")
        if isinstance(messages, list) and getattr(self.tok, "chat_template", None):
            chat = [*messages, {"role": "assistant", "content": completion}]
            return self.tok.apply_chat_template(chat, tokenize=False)
        return f"{rec.get('prompt') or ''}{completion}"

    def score(self, records: Sequence[dict[str, Any]]) -> list[Score]:
        texts = [self.text(r) for r in records]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        values: dict[int, float] = {}
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            enc = self.tok(
                [texts[i] for i in idx],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_length,
            ).to(self.device)
            with self.torch.inference_mode():
                logits = self.model(**enc).logits[:, 0].float().cpu().tolist()
            values.update(zip(idx, logits, strict=True))
        return [(values[i], {"model": self.path, "score": values[i]}) for i in range(len(texts))]

    def close(self) -> None:
        pass
