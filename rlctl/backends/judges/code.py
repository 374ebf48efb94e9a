"""`code`: run the completion's code against the reference tests (MBPP/HumanEval style).

Binary reward: 1.0 when every test statement runs, else 0.0 with the reason (which test
failed, a syntax error, a timeout, a limit, a blocked escape). A reference that does not parse
gives None: that is the dataset's fault, not the model's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rlctl.backends.judges.base import Score, completion_text
from rlctl.backends.judges.sandbox import Sandbox, split_tests

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|$)", re.S | re.I)
_BEGIN_DONE = re.compile(r"\[BEGIN\](.*?)(?:\[DONE\]|$)", re.S)


def extract_code(text: str) -> tuple[str, str]:
    """(code, where it came from): `[BEGIN]`...`[DONE]` (MBPP's prompt format), else the
    fenced block that defines something (the last one otherwise), else the whole text."""
    m = _BEGIN_DONE.search(text)
    if m:
        return _strip_fence(m.group(1)), "begin-done"
    blocks = _FENCE.findall(text)
    if blocks:
        defining = [b for b in blocks if re.search(r"^\s*(def|class|import|from)\s", b, re.M)]
        return (defining or blocks)[-1], "fence"
    return text, "raw"


def _strip_fence(code: str) -> str:
    inner = _FENCE.findall(code)
    return inner[0] if inner else code.strip().strip("`")


class CodeJudge:
    @classmethod
    def from_options(cls, o: dict[str, Any]) -> CodeJudge:
        """From its `judge.code` section."""
        return cls(
            workers=o["workers"],
            timeout=float(o["timeout"] or 5.0),
            memory_mb=int(o["memory_mb"] or 1024),
        )

    def __init__(
        self,
        workers: int | None = None,
        timeout: float = 5.0,
        memory_mb: int = 1024,
        audit_hook: bool = True,
    ) -> None:
        self.sandbox = Sandbox(
            workers=workers, timeout=timeout, memory_mb=memory_mb, audit_hook=audit_hook
        )
        self.name = "code"

    def score(self, records: Sequence[dict[str, Any]]) -> list[Score]:
        jobs: list[tuple[str, list[str]]] = []
        where: list[str] = []
        out: list[Score | None] = []
        for r in records:
            reference = r.get("reference")
            if isinstance(reference, list):
                reference = "\n".join(map(str, reference))
            try:
                tests = split_tests(reference) if reference else None
            except SyntaxError as e:
                out.append((None, {"reason": f"reference tests do not parse: {e.msg}"}))
                continue
            if not tests:
                out.append((None, {"reason": "no reference tests"}))
                continue
            code, source = extract_code(completion_text(r.get("completion")))
            jobs.append((code, tests))
            where.append(source)
            out.append(None)
        results = iter(self.sandbox.run_many(jobs))
        sources = iter(where)
        scores: list[Score] = []
        for slot in out:
            if slot is not None:
                scores.append(slot)
                continue
            res = next(results)
            scores.append(
                (1.0 if res.passed else 0.0, {**res.verdict(), "code_from": next(sources)})
            )
        return scores

    def close(self) -> None:
        self.sandbox.close()
