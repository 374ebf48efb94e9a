"""Each judge's own options, in its own section: `judge.llm.model`, `judge.code.timeout`.

One table, read by `rlctl judge` (whose flat flags, `--mode`, `--timeout`, `--model`, fill it)
and by `train grpo --reward` (`--set judge.llm.model=J` in a recipe), so a judge is configured
the same way wherever it runs, and no option of the trainer (its policy `model`, its
`batch_size`) can leak into a judge.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rlctl.options import Option, defaults, sections
from rlctl.options import flat_options as options_for_flags

MATH_MODES = ("auto", "strict", "answer-tag", "boxed", "flexible")

# each judge's options, typed (rlctl.options); None always means "the judge's default"
JUDGE_OPTIONS: dict[str, dict[str, Option]] = {
    "math": {"mode": Option("auto", "math: where the answer is", choices=MATH_MODES)},
    "format": {
        "regex": Option(
            None, "format: the regex a good output matches", shown_default="R1 think/answer"
        ),
        "search": Option(False, "format: match anywhere, not the whole text", bool),
    },
    "code": {
        "workers": Option(
            None, "code: sandboxes in parallel", int, min=1, shown_default="CPU count"
        ),
        "timeout": Option(5.0, "code: wall-clock seconds per program", float, min=0, min_open=True),
        "memory_mb": Option(1024, "code: address-space limit per program", int, min=1),
    },
    "llm": {
        "base_url": Option(None, "llm: the judge's server URL, e.g. http://127.0.0.1:8000/v1"),
        "model": Option(None, "llm: judge model name"),
        "mode": Option(
            "pointwise",
            "llm: 1-10 score; vs the reference; or the samples of a prompt vs each other",
            choices=("pointwise", "pairwise", "samples"),
        ),
        "template": Option(
            None,
            "llm: the judge's prompt: default, hh-helpful, hh-harmless, tldr, or a Jinja file",
            metavar="NAME|FILE",
        ),
        "constrain": Option(
            False,
            "llm: a vLLM judge may only answer with a verdict line (structured outputs)",
            bool,
        ),
        "max_tokens": Option(512, "llm: reply length limit", int, min=1),
        "concurrency": Option(8, "llm: requests in flight", int, min=1),
        "cache_dir": Option(None, "llm: where replies are cached", flags=()),
    },
    "rm": {
        "model": Option(None, "rm: sequence-classification reward model", metavar="PATH"),
        "batch_size": Option(16, "rm: completions per forward pass", int, min=1),
    },
    "ifeval": {
        "mode": Option(
            "strict",
            "ifeval: the reward is lm-eval's prompt-level strict or loose accuracy",
            choices=("strict", "loose"),
        )
    },
}
JUDGE_DEFAULTS: dict[str, dict[str, Any]] = {
    name: defaults(options) for name, options in JUDGE_OPTIONS.items()
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
    flat_keys = {**FLAT, **(extra or {})}
    return sections(JUDGE_OPTIONS, section, flat, flat_keys, flat_defaults, prefix="judge.")


def flat_options(extra: Mapping[str, tuple[str, str]] | None = None) -> dict[str, Option]:
    """`rlctl judge`'s flags: each is the judge option it fills (type, default, help)."""
    return options_for_flags(JUDGE_OPTIONS, {**FLAT, **(extra or {})})
