"""A stage's settings, typed, in one table: each `Option` holds the default, the help text and
the check of one config key. The stage's defaults (`defaults`), its command-line flags
(`cli.common.stage_options`) and the check of a value from a YAML file or `--set` (`check`) all
come from it, so they cannot drift apart (as TRL's config dataclasses do for its trainers).
Click-free: a notebook validates a config the same way."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rlctl.errors import BadInput

TYPE_NAMES = {
    str: "a string",
    bool: "true or false",
    int: "an integer",
    float: "a number",
    list: "a list",
    dict: "a mapping (a section)",
}


@dataclass(frozen=True)
class Option:
    default: Any = None
    help: str = ""
    type: type = str  # str, int, float, bool, list (of strings) or dict (a section)
    flags: tuple[str, ...] | None = None  # None: --key-with-dashes; (): config only
    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    min_open: bool = False  # `min` itself is not allowed (a top-p of 0)
    max_open: bool = False  # `max` itself is not allowed (β-DPO's ρ of 1 would keep no pair)
    negatable: bool = False  # bool: --x/--no-x instead of a flag that only turns it on
    metavar: str | None = None
    shown_default: str | None = None  # what the help's [default] says, when not the value
    mapping_ok: bool = False  # list: a config file may also give a mapping (TARGET: COLUMN)

    def describe(self) -> str:
        """The help text with its default, as `--help` and the reference pages show it."""
        shown = self.shown_default
        d = self.default
        if shown is None and d is not None and d is not False and d != [] and d != {}:
            shown = ", ".join(map(str, d)) if isinstance(d, list) else str(d)
        return f"{self.help} [{shown}]." if shown is not None else f"{self.help}."


def defaults(options: Mapping[str, Option]) -> dict[str, Any]:
    return {key: opt.default for key, opt in options.items()}


def check(key: str, opt: Option, value: Any) -> Any:
    """`value` as the option takes it (an int where a float goes becomes a float), or one line
    saying what was expected. YAML reads `[0-9]` as a list and `yes` as true, so a string
    option refuses a list, a mapping or a boolean instead of turning it into text."""
    if value is None:
        return None
    want = opt.type
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if want is list and isinstance(value, str):
        value = [value]  # one value where a list goes: `--set stop=END`, `from: data.jsonl`
    if want is list and isinstance(value, dict) and opt.mapping_ok:
        return value
    ok = isinstance(value, want) and (want is bool or not isinstance(value, bool))
    if not ok and want is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # a model called 7 is still the text "7"
    if not ok:
        hint = f" (quote it to keep it a string: --set \"{key}='...'\")" if want is str else ""
        raise BadInput(f"{key}: expected {TYPE_NAMES[want]}, got {_shown(value)}{hint}")
    if want is list:
        bad = [v for v in value if not isinstance(v, str)]
        if bad:
            raise BadInput(f"{key}: expected a list of strings, got {_shown(bad[0])} in it")
    if want is float and not math.isfinite(value):
        raise BadInput(f"{key}: {value!r} is not a finite number")
    for v in value if want is list else [value]:
        if opt.choices and v not in opt.choices:
            raise BadInput(f"{key}: {v!r} is not one of {', '.join(opt.choices)}")
    low = opt.min is not None and (value <= opt.min if opt.min_open else value < opt.min)
    high = opt.max is not None and (value >= opt.max if opt.max_open else value > opt.max)
    if want in (int, float) and (low or high):
        lo = "" if opt.min is None else (f"> {opt.min:g}" if opt.min_open else f">= {opt.min:g}")
        hi = "" if opt.max is None else (f"< {opt.max:g}" if opt.max_open else f"<= {opt.max:g}")
        raise BadInput(
            f"{key}: {value!r} is out of range ({' and '.join(x for x in (lo, hi) if x)})"
        )
    return value


def check_all(conf: dict[str, Any], options: Mapping[str, Option]) -> None:
    """Every key of a resolved config that has an `Option`, checked (and coerced) in place."""
    for key, opt in options.items():
        if key in conf:
            conf[key] = check(key, opt, conf[key])


Tables = Mapping[str, Mapping[str, Option]]  # a component's name -> its options


def sections(
    tables: Tables,
    given: Mapping[str, Any] | None,
    flat: Mapping[str, Any] | None,
    flat_keys: Mapping[str, tuple[str, str]],
    flat_defaults: Mapping[str, Any] | None = None,
    prefix: str = "",
) -> dict[str, dict[str, Any]]:
    """Each component's options (a judge's, a generation backend's): its defaults, then its
    section of the config (`judge.llm.model`, `vllm.max_model_len`), then the flat keys that
    differ from their defaults (a flag given: `--model`, `--max-model-len`). `flat_keys` maps
    a flat key to the (component, option) it fills. Every value is checked by its `Option`,
    and a bad one is one line naming where it came from."""
    out = {name: copy.deepcopy(defaults(options)) for name, options in tables.items()}
    for name, options in (given or {}).items():
        checked = {
            k: _check_in(tables, name, k, v, f"{prefix}{name}.{k}")
            for k, v in (options or {}).items()
        }
        out.setdefault(name, {}).update(checked)
    unset = flat_defaults or {}
    for key, (name, option) in flat_keys.items():
        if flat is not None and key in flat and flat[key] != unset.get(key):
            out[name][option] = _check_in(tables, name, option, flat[key], key)
    return out


def _check_in(tables: Tables, name: str, key: str, value: Any, shown: str) -> Any:
    opt = tables.get(name, {}).get(key)
    return value if opt is None else check(shown, opt, value)


def flat_options(tables: Tables, flat_keys: Mapping[str, tuple[str, str]]) -> dict[str, Option]:
    """A command's flat flags, each the component option it fills (type, default, help)."""
    options = {flat: tables[name][key] for flat, (name, key) in flat_keys.items()}
    return {flat: opt for flat, opt in options.items() if opt.flags != ()}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


DTYPES = ("auto", "float32", "bfloat16", "float16")


def precision(who: str, default: str) -> dict[str, Option]:
    """`--dtype` and `--fp32-lm-head`, worded for the side they configure (generator or
    trainer): every command that loads weights takes them the same way."""
    return {
        "dtype": Option(default, f"{who} weights dtype", choices=DTYPES),
        "fp32_lm_head": Option(False, f"{who}: compute the LM head in fp32", bool),
    }


# The in-process vLLM engine, for every command that can start one (rollout, eval).
VLLM_ENGINE = {
    "max_model_len": Option(None, "vllm: context length to allocate", int, min=1),
    "enforce_eager": Option(
        False, "vllm: no torch.compile or CUDA graphs (starts faster, generates slower)", bool
    ),
}

ENDPOINT = {
    "base_url": Option(None, "openai: server URL, e.g. http://127.0.0.1:8000/v1"),
    "endpoint": Option(None, "openai: a 'serve vllm' run of this store: 'latest' or a run id"),
}
