"""Keep secrets out of run.json: argv and configs are saved verbatim otherwise."""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
_SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|passw(or)?d|credential|auth)", re.I)
_SECRET_VALUE = re.compile(
    r"(sk-[A-Za-z0-9_\-]{16,}|hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|"
    r"xox[abpr]-[A-Za-z0-9\-]{10,}|AKIA[0-9A-Z]{16}|Bearer\s+\S+)"
)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return _SECRET_VALUE.sub(MASK, value)
    if isinstance(value, dict):
        return {
            k: MASK if is_secret_key(str(k)) and v else redact_value(v) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    return value


def redact_argv(argv: list[str]) -> list[str]:
    """`--api-key X`, `--api-key=X`, `--set openai.api_key=X` and token-shaped words are masked."""
    out: list[str] = []
    mask_next = False
    for arg in argv:
        if mask_next:
            out.append(MASK)
            mask_next = False
            continue
        if arg.startswith("-") and is_secret_key(arg):
            if "=" in arg:
                out.append(arg.split("=", 1)[0] + "=" + MASK)
            else:
                out.append(arg)
                mask_next = True
            continue
        if "=" in arg and is_secret_key(arg.split("=", 1)[0]):
            out.append(arg.split("=", 1)[0] + "=" + MASK)
            continue
        out.append(redact_value(arg))
    return out
