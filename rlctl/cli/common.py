"""What every stage command shares: the store, config flags, input and output handling."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from rlctl import config as cfg
from rlctl.errors import BadInput
from rlctl.options import Option, check_all
from rlctl.store import Store

log = logging.getLogger("rlctl")
F = TypeVar("F", bound=Callable[..., Any])


def get_store(ctx: click.Context) -> Store:
    root = ctx.find_root().obj or {}
    return Store.open(root.get("store"))


def config_options(f: F) -> F:
    """`-c FILE.yaml` and repeatable `--set key=value` (DESIGN.md section 6)."""
    f = click.option(
        "--set",
        "sets",
        multiple=True,
        metavar="KEY=VALUE",
        help="Override one config key (repeatable); beats the file, loses to flags.",
    )(f)
    return click.option(
        "-c", "--config", "config_file", type=click.Path(dir_okay=False), help="YAML config file."
    )(f)


class FiniteFloat(click.FloatRange):
    """A float flag that refuses NaN and infinity (click's FloatRange lets NaN through every
    bound, and a NaN temperature or timeout runs to a meaningless "ok")."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        import math

        out = super().convert(value, param, ctx)
        if not math.isfinite(out):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return out


def stage_options(options: Mapping[str, Option]) -> Callable[[F], F]:
    """A stage's flags, from its option table (`rlctl.options`): the name, type, range,
    choices and help with its default all come from there. A flag's value is None unless
    given, so the config file and `--set` are never silently overridden by a click default."""

    def deco(f: F) -> F:
        for key, opt in reversed(list(options.items())):
            if opt.flags == () or opt.type is dict:
                continue  # config only, or a section
            names = list(opt.flags or (f"--{key.replace('_', '-')}",))
            kw: dict[str, Any] = {"help": opt.describe(), "default": None}
            if opt.metavar:
                kw["metavar"] = opt.metavar
            if opt.type is bool:
                if opt.negatable:
                    long = names[-1]
                    names[-1] = f"{long}/--no-{long.removeprefix('--')}"
                else:
                    kw["is_flag"] = True
            elif opt.type is list:
                kw["multiple"] = True
                if opt.choices:
                    kw["type"] = click.Choice(list(opt.choices))
            elif opt.choices:
                kw["type"] = click.Choice(list(opt.choices))
            elif opt.type is int:
                kw["type"] = (
                    click.IntRange(opt.min, opt.max, min_open=opt.min_open)
                    if opt.min is not None or opt.max is not None
                    else int
                )
            elif opt.type is float:
                kw["type"] = FiniteFloat(opt.min, opt.max, min_open=opt.min_open)
            f = click.option(*names, key, **kw)(f)
        return f

    return deco


def resolve_config(
    ctx: click.Context,
    defaults: dict[str, Any],
    options: Mapping[str, Option] | None = None,
    **kw: Any,
) -> dict[str, Any]:
    """Flags given on the command line win; every other key comes from --set, the file or the
    defaults. Click's own defaults are ignored, so a config file is never silently overridden.
    Keys with an `Option` are checked by it, the others against their flag or default."""
    flags = {
        name: list(value) if isinstance(value, tuple) else value  # repeatable options
        for name, value in ctx.params.items()
        if name in defaults and ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE
    }
    conf = cfg.resolve(
        defaults,
        file=ctx.params.get("config_file"),
        sets=ctx.params.get("sets") or (),
        flags=flags,
        **kw,
    )
    typed = dict(options or {})
    check_types(ctx, conf, defaults, set(flags) | set(typed))
    check_all(conf, typed)
    return conf


def check_types(
    ctx: click.Context, conf: dict[str, Any], defaults: dict[str, Any], given: set[str]
) -> None:
    """A value from the config file or `--set` passes the same check as its flag would (type,
    range, choices), so `--set limit=abc` or `temperature: -1` in a recipe is one line, exit 2,
    before anything loads. Keys without a flag are checked against their default's type;
    sections must be mappings."""
    params = {p.name: p for p in ctx.command.params if isinstance(p, click.Option)}
    for key, value in conf.items():
        if key in given or value is None or value == defaults.get(key):
            continue
        default, param = defaults.get(key), params.get(key)
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise BadInput(f"{key}: expected a mapping (a section), got {_shown(value)}")
            continue
        if (param is not None and param.is_flag) or isinstance(default, bool):
            if not isinstance(value, bool):
                raise BadInput(f"{key}: expected true or false, got {_shown(value)}")
            continue
        if param is None:
            continue
        if param.multiple and not isinstance(value, list):
            raise BadInput(f"{key}: expected a list, e.g. [a, b], got {_shown(value)}")
        items = value if param.multiple else [value]
        if isinstance(param.type, click.types.StringParamType) and any(
            isinstance(v, (list, dict, bool)) for v in items
        ):  # click would turn ['0-9'] (YAML's reading of [0-9]) into the text "['0-9']"
            raise BadInput(
                f"{key}: expected a string, got {_shown(value)} (quote it to keep it a "
                f"string: --set \"{key}='...'\")"
            )
        try:
            converted = [param.type.convert(v, param, ctx) for v in items]
        except click.BadParameter as e:
            raise BadInput(f"{key}: {e.format_message()}") from None
        except (TypeError, ValueError):
            want = param.type.name
            raise BadInput(f"{key}: expected {want}, got {_shown(value)}") from None
        conf[key] = converted if param.multiple else converted[0]


def _shown(value: Any) -> str:
    """A value in an error line, never huge."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def precision_options(who: str, default: str) -> Callable[[F], F]:
    """`--dtype` and `--fp32-lm-head`, worded for the side they configure (generator or
    trainer): every command that loads weights takes them the same way."""

    def deco(f: F) -> F:
        f = click.option(
            "--fp32-lm-head",
            is_flag=True,
            default=None,
            help=f"{who}: compute the LM head in fp32.",
        )(f)
        return click.option(
            "--dtype",
            type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
            help=f"{who} weights dtype [{default}].",
        )(f)

    return deco


def input_option(f: F) -> F:
    return click.option(
        "-i",
        "--input",
        "inputs",
        multiple=True,
        metavar="IN",
        help="File, glob, '-' (stdin), run id, RUN:artifact or latest:NAME (repeatable). "
        "Default: stdin when piped.",
    )(f)


def output_option(f: F) -> F:
    return click.option(
        "-o",
        "--output",
        metavar="FILE",
        help="Also write the records here (.jsonl, .jsonl.gz, .parquet); '-' forces stdout.",
    )(f)


def endpoint_options(f: F) -> F:
    """`--base-url` and `--endpoint`: how every OpenAI-backed command finds its server."""
    f = click.option(
        "--endpoint", help="openai: a 'serve vllm' run of this store: 'latest' or a run id."
    )(f)
    return click.option("--base-url", help="openai: server URL, e.g. http://127.0.0.1:8000/v1.")(f)


def command_name(ctx: click.Context) -> str:
    """`data pull` for `rlctl data pull`: what the runs table calls the command."""
    return ctx.command_path.split(" ", 1)[1] if " " in ctx.command_path else ctx.command_path
