"""Each judge's own options, in its own section: `judge.llm.model`, `judge.code.timeout`.

One table, read by `rlctl judge` (whose flat flags, `--mode`, `--timeout`, `--model`, fill it)
and by `train grpo --reward` (`--set judge.llm.model=J` in a recipe), so a judge is configured
the same way wherever it runs, and no option of the trainer (its policy `model`, its
`batch_size`) can leak into a judge.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from rlctl.errors import BadInput

# each judge's options: (type, default); None always means "the judge's default"
JUDGE_OPTIONS: dict[str, dict[str, tuple[type, Any]]] = {
    "math": {"mode": (str, "auto")},
    "format": {"regex": (str, None), "search": (bool, False)},
    "code": {"workers": (int, None), "timeout": (float, 5.0), "memory_mb": (int, 1024)},
    "llm": {
        "base_url": (str, None),
        "model": (str, None),
        "mode": (str, "pointwise"),
        "template": (str, None),
        "constrain": (bool, False),
        "max_tokens": (int, 512),
        "concurrency": (int, 8),
        "cache_dir": (str, None),
    },
    "rm": {"model": (str, None), "batch_size": (int, 16)},
    "ifeval": {"mode": (str, "strict")},
}
JUDGE_DEFAULTS: dict[str, dict[str, Any]] = {
    name: {key: default for key, (_, default) in options.items()}
    for name, options in JUDGE_OPTIONS.items()
}
TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer", float: "a number"}

# `rlctl judge`'s flat flags (and the older flat keys of a grpo recipe): flag -> (judge, key)
FLAT = {
    "mode": ("math", "mode"),
    "format_regex": ("format", "regex"),
    "format_search": ("format", "search"),
    "workers": ("code", "workers"),
    "timeout": ("code", "timeout"),
    "memory_mb": ("code", "memory_mb"),
    "base_url": ("llm", "base_url"),
    "llm_mode": ("llm", "mode"),
    "llm_template": ("llm", "template"),
    "llm_constrain": ("llm", "constrain"),
    "llm_max_tokens": ("llm", "max_tokens"),
    "concurrency": ("llm", "concurrency"),
    "cache_dir": ("llm", "cache_dir"),
    "rm_model": ("rm", "model"),
    "ifeval_mode": ("ifeval", "mode"),
}


def judge_section(
    section: Mapping[str, Any] | None = None,
    flat: Mapping[str, Any] | None = None,
    flat_defaults: Mapping[str, Any] | None = None,
    extra: Mapping[str, tuple[str, str]] | None = None,
) -> dict[str, dict[str, Any]]:
    """The judges' options: defaults, then the `judge:` section, then flat keys that differ
    from their defaults (a flag given, or an older recipe's flat key). `extra` maps more flat
    keys for one command (`rlctl judge --model` is the llm judge's model)."""
    out = copy.deepcopy(JUDGE_DEFAULTS)
    for name, options in (section or {}).items():
        out.setdefault(name, {}).update(options or {})
    for name, options in (section or {}).items():
        for key, value in (options or {}).items():
            check_type(name, key, value, f"judge.{name}.{key}")
    mapping = {**FLAT, **(extra or {})}
    defaults = flat_defaults or {}
    for key, (name, option) in mapping.items():
        if flat is not None and key in flat and flat[key] != defaults.get(key):
            check_type(name, option, flat[key], key)
            out[name][option] = flat[key]
    return out


def check_type(judge: str, key: str, value: Any, shown: str) -> None:
    """A value of the type the judge takes, or one line: a YAML-looking `--set` value
    (`[0-9]`, `yes`) is parsed as YAML, so a regex or a word may arrive as a list or a bool."""
    want = JUDGE_OPTIONS.get(judge, {}).get(key, (None,))[0]
    if want is None or value is None:
        return
    ok = isinstance(value, want) and (want is bool or not isinstance(value, bool))
    ok = ok or (want is float and isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        hint = f" (quote it to keep it a string: --set \"{shown}='...'\")" if want is str else ""
        raise BadInput(f"{shown}: expected {TYPE_NAMES[want]}, got {value!r:.60}{hint}")
