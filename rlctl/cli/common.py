"""What every stage command shares: the store, config flags, input and output handling."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from rlctl import config as cfg
from rlctl.errors import PIPE_CLOSED, BadInput, RlctlError, RunInterrupted
from rlctl.records import RecordReader, RecordWriter, StreamWriter, validate
from rlctl.records import kind as kind_by_name
from rlctl.store import Run, Store, check_upstream, resolve_inputs

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


def resolve_config(ctx: click.Context, defaults: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """Flags given on the command line win; every other key comes from --set, the file or the
    defaults. Click's own defaults are ignored, so a config file is never silently overridden."""
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
    check_types(ctx, conf, defaults, set(flags))
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
        try:
            converted = [
                param.type.convert(v, param, ctx) for v in (value if param.multiple else [value])
            ]
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


def resolve_endpoint(store: Store, conf: dict[str, Any]) -> dict[str, Any] | None:
    """`--endpoint latest|RUN` (a `serve vllm` run) or `--base-url` for an OpenAI backend; the
    served model's name fills in `--model` when not given. Returns the endpoint a `serve`
    run registered (what it serves, in which dtype), or None for a foreign `--base-url`."""
    from rlctl.store.refs import find_endpoint

    endpoint = None
    if conf.get("endpoint"):
        endpoint = find_endpoint(store, conf["endpoint"])
        conf["base_url"] = endpoint["url"]
        conf["model"] = conf["model"] or endpoint["model"]
    if not conf.get("base_url"):
        raise BadInput("--backend openai needs --base-url URL or --endpoint latest")
    return endpoint


def record_engine(run: Run, engine: dict[str, Any]) -> dict[str, Any]:
    """What the generator really ran, in run.json (`generator`). Through an OpenAI endpoint the
    client's own `dtype`/`fp32_lm_head` settings do not apply, so the config records the
    server's instead of the client's defaults. A dtype nobody chose is said on stderr."""
    run.info["generator"] = engine
    if engine["engine"] not in ("transformers", "vllm"):  # a server: client settings moot
        run.info["config"].update(dtype=engine["dtype"], fp32_lm_head=engine["fp32_lm_head"])
    run.save()
    saved = engine.get("checkpoint_dtype")
    if engine["dtype_chosen_by"] == "engine default" and engine["dtype"] != saved:
        log.warning(
            "the generator runs in %s, its engine's choice (no --dtype given), while the "
            "checkpoint is %s; recorded in the run and every record",
            engine["dtype"],
            saved or "of unknown dtype",
        )
    elif engine["dtype_chosen_by"] == "unknown":
        log.warning("generator dtype unknown: %s", engine.get("note") or "not reported")
    return engine


def link_model(run: Run, conf: dict[str, Any], endpoint: dict[str, Any] | None) -> None:
    """Lineage to the model a command runs: the `serve` run behind an endpoint (which links
    its own model), or the model path itself (store.models: by run, else by content)."""
    if endpoint is not None:
        run.add_input(endpoint["url"], endpoint.get("run_id"), via="endpoint")
    elif conf.get("backend") != "openai" and conf.get("model"):
        run.add_model(str(conf["model"]))


def open_inputs(
    store: Store,
    run: Run,
    inputs: tuple[str, ...],
    kind: str,
    *,
    validate: bool = True,
    via: str | None = None,
) -> RecordReader:
    """Records in, with lineage: artifacts link to their run, every record's run_id to its own.
    `kind` picks a run's artifacts; `validate=False` reads records in a foreign shape (an
    lm-eval task's own columns) without checking them against it; `via` names the role of an
    input in the lineage (`eval`: a held-out set) instead of how it was found."""
    refs = list(inputs)
    if not refs:
        if sys.stdin.isatty():
            raise click.UsageError("no input: pipe records in or pass -i FILE")
        refs = ["-"]
    resolved = resolve_inputs(store, refs, kind=kind)
    for inp in resolved:
        if inp.path != "-":
            run.add_input(inp.path, inp.run_id, via=via or ("artifact" if inp.run_id else "file"))
    reader = RecordReader(
        [i.path for i in resolved],
        kind if validate else None,
        on_stdin_eof=lambda parents: check_upstream(store, parents),
    )
    run.track_parents(reader)
    return reader


_records_out: list[Any] = []


def guard_stdout() -> None:
    """Keep stdout for records only, even when a library (vLLM, and the engine processes it
    starts) prints there: fd 1 is pointed at stderr, which child processes inherit, and
    records go to a private duplicate of the original stdout."""
    import os

    if _records_out:
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    _records_out.append(os.fdopen(saved, "wb"))


def _records_stream() -> Any:
    return _records_out[0] if _records_out else sys.stdout.buffer


def _stdout_is_tty() -> bool:
    return _records_stream().isatty()


def emit(
    run: Run,
    records: Iterable[dict[str, Any]],
    kind: str,
    *,
    name: str,
    output: str | None = None,
    fmt: str = "jsonl",
    stdout: bool = True,
) -> int:
    """Store the records as an artifact, and stream them to stdout when piped (or `-o -`).

    Each record gets this run's id. Records are validated on the way out too: a stage that
    writes a malformed record is a bug, and the next stage should not be the one to find it.
    """
    k = kind_by_name(kind)
    to_stdout = stdout and (output == "-" or (output is None and not _stdout_is_tty()))
    sinks: list[Any] = [run.artifact(name, kind, fmt)]
    if output not in (None, "-"):
        sinks.append(RecordWriter(output))
    stream = StreamWriter(_records_stream()) if to_stdout else None
    n = 0
    try:
        for rec in records:
            rec["run_id"] = run.run_id
            problem = validate(rec, k)
            if problem:
                raise RlctlError(
                    f"internal: {run.command} made an invalid {kind} record: {problem}"
                )
            for s in sinks:
                s.write(rec)
            if stream is not None:
                stream.write(rec)
            n += 1
        if stream is not None:
            stream.close()
    except BaseException as e:
        for s in sinks:
            s.close(ok=False)
        if isinstance(e, BrokenPipeError):
            raise RunInterrupted("the next stage closed the pipe", PIPE_CLOSED) from None
        raise
    for s in sinks:
        s.close(ok=True)
    log.info("%d %s records -> %s (run %s)", n, kind, display_path(sinks[0].path), run.run_id)
    return n


def progress(records: Iterable[dict[str, Any]], what: str) -> Iterator[dict[str, Any]]:
    """A rich progress line on stderr (count and rate; streams have no total), only on a
    terminal so logs and CI output stay clean."""
    if not sys.stderr.isatty():
        yield from records
        return
    from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), "{task.description}", MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(what, total=None)
        for rec in records:
            yield rec
            bar.advance(task)


def display_path(path: Path) -> str:
    """Relative to the working directory when inside it: shorter, and still copy-pasteable."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def command_name(ctx: click.Context) -> str:
    """`data pull` for `rlctl data pull`: what the runs table calls the command."""
    return ctx.command_path.split(" ", 1)[1] if " " in ctx.command_path else ctx.command_path
