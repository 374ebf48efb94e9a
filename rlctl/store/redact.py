"""Keep secrets out of run.json: argv and configs are saved verbatim otherwise.

A secret is recognised by what it is, never by a word inside a flag's name (`--max-tokens 64`
and `tokenizer.pad_token` are settings, not secrets): a value shaped like a known kind of key
(OpenAI, Hugging Face, GitHub, Slack, AWS, a bearer header), a URL's password, the value of a
secret environment variable that is set in this process, or the value of a key whose whole name
is a secret's name (`api_key`, `hf_token`, `password`, ...). Error messages pass through the
same masker before they reach run.json (a server may echo the key in its 401).
"""

from __future__ import annotations

import os
import re
from typing import Any

MASK = "***"
# Whole key names (lower case, '-' read as '_', the last component of a dotted --set key).
SECRET_KEYS = frozenset(
    {
        "api_key",
        "apikey",
        "openai_api_key",
        "anthropic_api_key",
        "wandb_api_key",
        "token",
        "hf_token",
        "hub_token",
        "access_token",
        "auth_token",
        "bearer_token",
        "github_token",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "secret_key",
        "aws_secret_access_key",
        "aws_session_token",
        "authorization",
        "credentials",
    }
)
# Environment variables whose values are secrets wherever they turn up.
SECRET_ENV = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "WANDB_API_KEY",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "VLLM_API_KEY",
)
_SECRET_VALUE = re.compile(
    r"(sk-[A-Za-z0-9_\-]{16,}|hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|"
    r"xox[abpr]-[A-Za-z0-9\-]{10,}|AKIA[0-9A-Z]{16}|Bearer\s+\S+|Basic\s+[A-Za-z0-9+/=]{8,})"
)
_MIN_ENV_SECRET = 8  # shorter values ("1", "EMPTY") would mask ordinary words
# user:password@ in a URL (`--base-url https://me:pw@host/v1`): the password goes
_URL_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*):[^\s@/]+@")


def is_secret_key(key: str) -> bool:
    name = key.lstrip("-").split("=", 1)[0].rsplit(".", 1)[-1]
    return name.lower().replace("-", "_") in SECRET_KEYS


def _env_secrets() -> list[str]:
    values = (os.environ.get(name) or "" for name in SECRET_ENV)
    return sorted({v for v in values if len(v) >= _MIN_ENV_SECRET}, key=len, reverse=True)


def redact_text(text: str) -> str:
    """Any text bound for the store: argv words, config values, error messages."""
    for secret in _env_secrets():
        text = text.replace(secret, MASK)
    text = _URL_CREDENTIALS.sub(rf"\1:{MASK}@", text)
    return _SECRET_VALUE.sub(MASK, text)


def redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            k: MASK if is_secret_key(str(k)) and v else redact_value(v) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    return value


def redact_argv(argv: list[str]) -> list[str]:
    """`--api-key X`, `--api-key=X`, `--set openai.api_key=X` and key-shaped words are masked."""
    out: list[str] = []
    mask_next = False
    for arg in argv:
        if mask_next:
            out.append(MASK)
            mask_next = False
            continue
        if arg.startswith("--") and is_secret_key(arg):
            if "=" in arg:
                out.append(arg.split("=", 1)[0] + "=" + MASK)
            else:
                out.append(arg)
                mask_next = True
            continue
        if "=" in arg and not arg.startswith("-") and is_secret_key(arg.split("=", 1)[0]):
            out.append(arg.split("=", 1)[0] + "=" + MASK)
            continue
        out.append(redact_text(arg))
    return out
