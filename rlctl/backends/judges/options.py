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

JUDGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "math": {"mode": "auto"},
    "format": {"regex": None, "search": False},
    "code": {"workers": None, "timeout": 5.0, "memory_mb": 1024},
    "llm": {
        "base_url": None,
        "model": None,
        "mode": "pointwise",
        "template": None,
        "constrain": False,
        "max_tokens": 512,
        "concurrency": 8,
        "cache_dir": None,
    },
    "rm": {"model": None, "batch_size": 16},
    "ifeval": {"mode": "strict"},
}

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
    mapping = {**FLAT, **(extra or {})}
    defaults = flat_defaults or {}
    for key, (name, option) in mapping.items():
        if flat is not None and key in flat and flat[key] != defaults.get(key):
            out[name][option] = flat[key]
    return out
