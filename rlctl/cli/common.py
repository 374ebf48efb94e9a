"""What every stage command shares: the store, config flags, input and output handling."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from rlctl import config as cfg
from rlctl.cli.context import get_store as get_store  # every command imports it from here
from rlctl.options import Option, check_all
from rlctl.store.layout import Store

log = logging.getLogger("rlctl")
F = TypeVar("F", bound=Callable[..., Any])


def config_options(f: F) -> F:
    """`-c FILE.yaml`, repeatable `--set key=value` (DESIGN.md section 6) and `--dry-run`."""
    f = click.option(
        "--dry-run",
        is_flag=True,
        help="Check the config, inputs, model and endpoint without loading a model; print "
        "the resolved config (YAML for -c); record nothing.",
    )(f)
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
                kw["type"] = FiniteFloat(
                    opt.min, opt.max, min_open=opt.min_open, max_open=opt.max_open
                )
            f = click.option(*names, key, **kw)(f)
        return f

    return deco


def resolve_config(
    ctx: click.Context, defaults: dict[str, Any], options: Mapping[str, Option], **kw: Any
) -> dict[str, Any]:
    """Flags given on the command line win; every other key comes from --set, the file or the
    defaults. Click's own defaults are ignored, so a config file is never silently overridden.
    Every key is then checked by its `Option` (type, range, choices), wherever it came from."""
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
    check_all(conf, options)
    return conf


def dry_run(
    ctx: click.Context,
    store: Store,
    conf: dict[str, Any],
    defaults: Mapping[str, Any],
    check: Callable[[Any], list[tuple[str, str]]],
) -> bool:
    """With `--dry-run`: `check(run)` through a run that records nothing, then the resolved
    config and the findings printed (stages/dry_run.py); True when that is all to do."""
    if not ctx.params.get("dry_run"):
        return False
    from rlctl.stages.dry_run import report
    from rlctl.store.run import DryRun

    with DryRun(store, command_name(ctx), config=conf) as run:
        found = check(run)
    report(command_name(ctx), conf, defaults, found)
    return True


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


def command_name(ctx: click.Context) -> str:
    """`data pull` for `rlctl data pull`: what the runs table calls the command."""
    return ctx.command_path.split(" ", 1)[1] if " " in ctx.command_path else ctx.command_path
