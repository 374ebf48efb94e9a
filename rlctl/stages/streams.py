"""Records into and out of a run, the way every stage does it: inputs resolved with lineage
and checked against their producer, outputs stored as atomic artifacts and streamed down the
pipe. No click here: a notebook or script records a run exactly as the CLI does
(docs/architecture.md has the example)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rlctl.errors import PIPE_CLOSED, BadInput, RlctlError, RunInterrupted
from rlctl.records import RecordReader, RecordWriter, StreamWriter, validate
from rlctl.records import kind as kind_by_name
from rlctl.store import Run, Store, check_upstream, resolve_inputs

log = logging.getLogger("rlctl")


def open_inputs(
    store: Store,
    run: Run,
    inputs: tuple[str, ...] | list[str],
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
            raise BadInput("no input: pipe records in or pass -i FILE")
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
_swapped_stdout: list[Any] = []


def guard_stdout() -> None:
    """Keep stdout for records only, even when a library (vLLM, and the engine processes it
    starts) prints there: fd 1 is pointed at stderr for the rest of the process (child
    processes and exit handlers print after the command returns), and records go to a
    private duplicate of the original stdout. Where stdout is not fd 1 (a notebook, a test
    calling the entry point), records go to that stream and Python-level prints to stderr
    until `release_stdout`."""
    import os

    if _records_out:
        return
    sys.stdout.flush()
    try:
        on_fd1 = sys.stdout.fileno() == 1
    except (OSError, ValueError):
        on_fd1 = False
    if on_fd1:
        saved = os.dup(1)
        os.dup2(2, 1)
        _records_out.append(os.fdopen(saved, "wb"))
    else:
        _swapped_stdout.append(sys.stdout)
        _records_out.append(sys.stdout.buffer)
        sys.stdout = sys.stderr


def release_stdout() -> None:
    """Give a program that ran a command through the entry point its own stdout back (the
    swap `guard_stdout` makes where stdout is not fd 1); without it, the program's next
    prints, and the next command's records, would go where this command's went."""
    if _swapped_stdout:
        sys.stdout = _swapped_stdout.pop()
        _records_out.clear()


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
    fmt: str | None = None,
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
