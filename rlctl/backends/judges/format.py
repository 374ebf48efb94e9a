"""`format`: reward for the output's shape, e.g. R1-style `<think>...</think><answer>...</answer>`.

A shaping reward, meant to be combined at a small weight (`--judge math=1 --judge format=0.1`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rlctl.backends.judges.base import Score, completion_text
from rlctl.errors import BadInput

R1_FORMAT = r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$"


class FormatJudge:
    @classmethod
    def from_options(cls, o: dict[str, Any]) -> FormatJudge:
        """From its `judge.format` section (no regex: the R1 think/answer shape)."""
        return cls(o["regex"] or R1_FORMAT, bool(o["search"]))

    def __init__(self, pattern: str = R1_FORMAT, search: bool = False) -> None:
        try:
            self.regex = re.compile(pattern, re.S)
        except re.error as e:
            raise BadInput(f"--format-regex {pattern!r}: not a valid regex ({e})") from e
        self.pattern = pattern
        self.search = search
        self.name = "format"

    def score(self, records: Sequence[dict[str, Any]]) -> list[Score]:
        find = self.regex.search if self.search else self.regex.match
        out: list[Score] = []
        for r in records:
            ok = find(completion_text(r.get("completion"))) is not None
            out.append((1.0 if ok else 0.0, {"pattern": self.pattern, "matched": ok}))
        return out

    def close(self) -> None:
        pass
