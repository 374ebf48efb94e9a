"""`math`: GSM8K-style answers checked against `reference`.

The extraction regexes of `strict` and `flexible` are lm-eval's gsm8k `strict-match` and
`flexible-extract` filters, so rewards line up with the numbers papers report. Comparison
differs on purpose in a few places (docs/judges.md lists every case, and a test pins them):
answers are compared as numbers (`72.0` equals `72`, `0.50` equals `0.5`), `#### $18` and
`####18` count as strict answers, and a Unicode minus is a minus. References that are not plain
numbers (LaTeX, fractions, expressions) go to `math-verify` when it is installed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from rlctl.backends.judges.base import Score, completion_text
from rlctl.errors import BadInput

# lm-eval gsm8k.yaml, filter "strict-match" (first match) and "flexible-extract" (last match).
LM_EVAL_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
LM_EVAL_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
# Ours: the same, also accepting `####18` and `#### $18`.
STRICT = re.compile(r"####\s*\$?\s*(\-?[0-9\.\,]+)")
ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
MODES = ("auto", "strict", "answer-tag", "boxed", "flexible")


def _boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}), braces balanced."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


_RUN_REVERSED = re.compile(r"[$0-9.,]+")
_PLAIN = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def _unminus(text: str) -> str:
    if "\u2212" in text or "\u2013" in text:
        return text.replace("\u2212", "-").replace("\u2013", "-")
    return text


def last_flexible(text: str) -> str | None:
    """The last match of lm-eval's flexible-extract regex, found from the end.

    Equivalent to `findall(...)[-1]` (a test checks it against the regex): matches never span
    two runs of `[$0-9.,]`, so the last match is the last run that is 2+ characters long or a
    single digit, with the `-` just before it. Scanning backwards stops at the final answer
    instead of matching every number of a long chain of thought.
    """
    rev = text[::-1]
    n = len(text)
    for m in _RUN_REVERSED.finditer(rev):
        run = m.group()
        if len(run) >= 2 or run.isdigit():
            start = n - m.end()
            if start > 0 and text[start - 1] == "-":
                start -= 1
            return text[start : n - m.start()].strip()
    return None


def extract(text: str, mode: str) -> tuple[str | None, str]:
    """(answer, the mode that found it). `auto` tries strict, answer-tag, boxed, then flexible,
    so a recipe's own format wins and a bare final number still counts."""
    text = _unminus(text)
    if mode in ("strict", "auto"):
        m = STRICT.search(text)
        if m:
            return m.group(1).strip(), "strict"
    if mode in ("answer-tag", "auto"):
        tags = ANSWER_TAG.findall(text)
        if tags:
            inner = tags[-1].strip()
            boxed = _boxed(inner)
            return (boxed if boxed is not None else inner), "answer-tag"
    if mode in ("boxed", "auto"):
        boxed = _boxed(text)
        if boxed is not None:
            return boxed.strip(), "boxed"
    if mode in ("flexible", "auto"):
        found = last_flexible(text)
        if found is not None:
            return found, "flexible"
    return None, mode


@functools.lru_cache(maxsize=65536)
def to_number(text: str) -> Decimal | None:
    """`$1,234.50.` -> 1234.50; `18 dollars` -> 18; None when there is no single number."""
    if _PLAIN.fullmatch(text):
        return Decimal(text)
    s = _unminus(text).strip()
    s = re.sub(r"\\(?:text|mathrm)\{[^}]*\}", "", s)
    s = s.replace("\\$", "").replace("$", "").replace(",", "").replace("\\!", "").strip()
    s = re.sub(r"\.$", "", s).strip()
    s = re.sub(r"\s*(?:%|\\%|[a-zA-Z]+\.?)$", "", s).strip()  # trailing units: 18 dollars, 5%
    try:
        return Decimal(s)
    except InvalidOperation:
        return None


def equal(answer: str, reference: str) -> tuple[bool, str]:
    """(match, how it was decided)."""
    a, r = to_number(answer), to_number(reference)
    if a is not None and r is not None:
        return a == r, "numeric"
    if a is None or r is None:  # LaTeX or symbolic on either side
        verified = _math_verify(answer, reference)
        if verified is not None:
            return verified, "math-verify"
    norm = lambda s: re.sub(r"\s+", "", s).strip(".").lower()  # noqa: E731
    return norm(answer) == norm(reference), "string"


def _math_verify(answer: str, reference: str) -> bool | None:
    try:
        from math_verify import parse, verify
    except ImportError:
        return None
    try:
        gold = parse(reference if "$" in reference else f"${reference}$")
        pred = parse(answer if "$" in answer or "\\" in answer else f"${answer}$")
        if not gold or not pred:
            return None
        return bool(verify(gold, pred))
    except Exception:  # noqa: BLE001 (math-verify raises on odd LaTeX; then fall back)
        return None


class MathJudge:
    """1.0 when the extracted answer equals the reference, 0.0 when not, None without a
    reference (TRL skips None rewards rather than counting them as wrong)."""

    @classmethod
    def from_options(cls, o: dict[str, Any]) -> MathJudge:
        """From its `judge.math` section."""
        return cls(mode=o["mode"] or "auto")

    def __init__(self, mode: str = "auto") -> None:
        if mode not in MODES:
            raise BadInput(f"--mode {mode}: use one of {', '.join(MODES)}")
        self.mode = mode
        self.name = "math"

    def score_one(self, completion: Any, reference: Any) -> Score:
        if reference is None or reference == "":
            return None, {"mode": self.mode, "reason": "no reference"}
        ref = " ".join(reference) if isinstance(reference, list) else str(reference)
        answer, used = extract(completion_text(completion), self.mode)
        verdict: dict[str, Any] = {"mode": used, "extracted": answer, "reference": ref}
        if answer is None:
            verdict["reason"] = "no answer found"
            return 0.0, verdict
        ok, how = equal(answer, ref)
        verdict["compared"] = how
        return (1.0 if ok else 0.0), verdict

    def score(self, records: Sequence[dict[str, Any]]) -> list[Score]:
        return [self.score_one(r.get("completion"), r.get("reference")) for r in records]

    def close(self) -> None:
        pass
