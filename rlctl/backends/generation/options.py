"""Each generation backend's own options, in its own section of `rollout`'s config:
`hf.batch_size`, `vllm.max_model_len`, `openai.concurrency` (as each judge has `judge.NAME`).

A backend is built from the settings every backend shares (model, sampling seed, dtype, chat
template) and its own section only, so `--concurrency` cannot reach transformers. The flat
flags (`--batch-size`, `--max-model-len`, `--concurrency`) fill the same sections. An option
set for a backend that is not the one running is said on stderr, not dropped in silence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rlctl.options import VLLM_ENGINE, Option, defaults, sections
from rlctl.options import flat_options as options_for_flags

BACKEND_OPTIONS: dict[str, dict[str, Option]] = {
    "hf": {"batch_size": Option(16, "hf: prompts per generate call", int, min=1)},
    "vllm": dict(VLLM_ENGINE),
    "openai": {
        "api": Option("chat", "openai: which API", choices=("chat", "completions")),
        "concurrency": Option(16, "openai: requests in flight", int, min=1),
    },
}
BACKEND_DEFAULTS = {name: defaults(options) for name, options in BACKEND_OPTIONS.items()}

# the flat flags: flag -> (backend, key)
FLAT = {
    "batch_size": ("hf", "batch_size"),
    "api": ("openai", "api"),
    "concurrency": ("openai", "concurrency"),
    "max_model_len": ("vllm", "max_model_len"),
    "enforce_eager": ("vllm", "enforce_eager"),
}
# where an openai server is: the other backends load `--model` themselves
SERVER_KEYS = ("base_url", "endpoint")


def flat_options() -> dict[str, Option]:
    """`rollout`'s flags for the backends' options (type, default, help from their table)."""
    return options_for_flags(BACKEND_OPTIONS, FLAT)


def section_options() -> dict[str, Option]:
    """The sections themselves, config-only (`--set vllm.max_model_len=4096`, or `vllm:` in
    a file)."""
    return {
        name: Option(BACKEND_DEFAULTS[name], f"the {name} backend's options", dict)
        for name in BACKEND_OPTIONS
    }


def fill_sections(conf: dict[str, Any], flat_defaults: Mapping[str, Any]) -> None:
    """Each backend's section resolved in place (section, then the flat keys given), so the
    run records what every backend would have read."""
    given = {name: conf.get(name) for name in BACKEND_OPTIONS}
    conf.update(sections(BACKEND_OPTIONS, given, conf, FLAT, flat_defaults))


def unused(conf: Mapping[str, Any]) -> list[str]:
    """The options set for a backend other than `conf["backend"]`, as the user wrote them."""
    flag_of = {target: flat for flat, target in FLAT.items()}
    out = []
    for name in BACKEND_OPTIONS:
        if name == conf["backend"]:
            continue
        for key, value in conf[name].items():
            if value != BACKEND_DEFAULTS[name][key]:
                flag = flag_of.get((name, key))
                out.append(f"{name}.{key}" + (f" (--{flag.replace('_', '-')})" if flag else ""))
    if conf["backend"] != "openai":
        out += [f"--{k.replace('_', '-')}" for k in SERVER_KEYS if conf.get(k)]
    return out


def backend_options(conf: Mapping[str, Any]) -> dict[str, Any]:
    """What `make_backend` gives the running backend: the shared settings and its own section,
    none of the other backends' options."""
    others = set(FLAT) | set(BACKEND_OPTIONS)
    shared = {k: v for k, v in conf.items() if k not in others}
    return {**shared, **conf[conf["backend"]]}
