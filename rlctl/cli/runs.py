"""`rlctl runs ls|show|tail`: the history, without writing SQL."""

from __future__ import annotations

import sys
import time
from collections import deque
from pathlib import Path

import click
import orjson

from rlctl.cli.common import get_store
from rlctl.store import Index, Store

STATUSES = ("running", "ok", "failed", "interrupted")


@click.group()
def runs() -> None:
    """List, show and follow runs."""


@runs.command(
    "ls",
    epilog="\b\nExamples:\n  rlctl runs ls --status failed\n"
    "  rlctl runs ls --command 'data pull' --json",
)
@click.option("--command", "command", help="Only runs of this command (e.g. 'data pull').")
@click.option("--status", type=click.Choice(STATUSES), help="Only runs with this status.")
@click.option("--job", help="Only runs of this Slurm job (the submit and the runs it made).")
@click.option(
    "-n", "--limit", type=int, default=20, show_default=True, help="Newest N runs (0: all)."
)
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@click.pass_context
def ls_cmd(
    ctx: click.Context,
    command: str | None,
    status: str | None,
    job: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Runs, newest first."""
    from rlctl.cli.render import write

    where, params = [], []
    if command:
        where.append("(command = ? OR replace(command, ' ', '-') = ?)")
        params += [command, command]
    if status:
        where.append("status = ?")
        params.append(status)
    if job:
        where.append("slurm_job = ?")
        params.append(job)
    sql = (
        "SELECT run_id, command, status, started_at, round(duration_s, 2) AS seconds, "
        "(SELECT sum(records) FROM artifacts a "
        "WHERE a.run_id = r.run_id AND a.complete) AS records, "
        "slurm_job AS job, error FROM runs r"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " ORDER BY started_at DESC, run_id DESC"
        + (f" LIMIT {int(limit)}" if limit > 0 else "")
    )
    write(Index(get_store(ctx)).query(sql, params), "json" if as_json else "table")


@runs.command(
    "diff",
    epilog="\b\nExamples:\n  rlctl runs diff 20261201-0930 20261201-1012\n"
    "  rlctl runs diff RUN_A RUN_B --json | jq .",
)
@click.argument("run_a", metavar="A")
@click.argument("run_b", metavar="B")
@click.option("--json", "as_json", is_flag=True, help="JSON lines: section, key, a, b.")
@click.pass_context
def diff_cmd(ctx: click.Context, run_a: str, run_b: str, as_json: bool) -> None:
    """What differs between two runs: config keys, inputs (by content hash), code (git, host),
    environment (every installed package, python, platform, GPUs) and metrics at their last
    step (A, B: id, prefix/suffix, latest)."""
    from rlctl.cli.render import write
    from rlctl.store.diff import diff_runs
    from rlctl.store.index import QueryResult

    store = get_store(ctx)
    a, b = (_synced_run(store, r).get("run_id") or r for r in (run_a, run_b))
    rows = list(diff_runs(store, a, b))
    if as_json:
        for row in rows:
            sys.stdout.buffer.write(orjson.dumps(row, default=str) + b"\n")
        return
    shown = [[r["section"], r["key"], _cell(r["a"]), _cell(r["b"])] for r in rows]
    result = QueryResult(["section", "key", a, b], ["VARCHAR"] * 4, shown)
    write(result, "table")
    if not rows:
        sys.stderr.write("no recorded difference\n")


def _cell(value: object) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return text if len(text) <= 80 else text[:77] + "..."


def _synced_run(store: Store, ref: str) -> dict:
    """Sync first, so a killed run reads `interrupted`, not `running`."""
    rid = _latest(store) if ref == "latest" else store.match_run(ref)
    with Index(store).connect():
        pass
    return store.read_run(rid) or {}


def _latest(store: Store) -> str:
    newest = next(store.iter_runs(), None)
    if newest is None:
        raise click.UsageError(f"no runs in {store.root}")
    return str(newest["run_id"])


def _latest_with(store: Store, metrics: tuple[str, ...]) -> str:
    """`latest` for a plot: the newest run that logged every metric asked for. The newest run
    alone would be a race after `data pull | train sft`: both stages start together and the
    pull, with no loss curve, may start last."""
    rows = (
        Index(store)
        .query(
            "SELECT run_id FROM metrics JOIN runs USING (run_id) WHERE list_contains(?, name) "
            "GROUP BY run_id, started_at HAVING count(DISTINCT name) = ? "
            "ORDER BY started_at DESC, run_id DESC LIMIT 1",
            [list(metrics), len(set(metrics))],
        )
        .rows
    )
    if not rows:
        raise click.UsageError(f"no run in {store.root} logged {', '.join(metrics)}")
    sys.stderr.write(f"rlctl: latest run that logged {', '.join(metrics)}: {rows[0][0]}\n")
    return str(rows[0][0])


@runs.command(
    "show", epilog="\b\nExamples:\n  rlctl runs show latest\n  rlctl runs show 20261124-1200"
)
@click.argument("run_ref", metavar="RUN")
@click.option("--json", "as_json", is_flag=True, help="Print run.json as it is on disk.")
@click.option(
    "--replay",
    is_flag=True,
    help="Print the command line that reproduces the run: its inputs by stored artifact, "
    "its resolved config as --set.",
)
@click.pass_context
def show_cmd(ctx: click.Context, run_ref: str, as_json: bool, replay: bool) -> None:
    """One run: status, config, artifacts, inputs (RUN: id, unique prefix/suffix, or 'latest')."""
    store = get_store(ctx)
    run = _synced_run(store, run_ref)
    if replay:
        from rlctl.cli.replay import replay_line

        click.echo(replay_line(store, run))
        return
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(run, option=orjson.OPT_INDENT_2) + b"\n")
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    head = Table.grid(padding=(0, 2))
    for key in (
        "run_id",
        "command",
        "status",
        "error",
        "started_at",
        "ended_at",
        "duration_s",
        "host",
        "seed",
    ):
        if run.get(key) is not None:
            head.add_row(f"[bold]{key}[/]", Text(str(run[key])))  # values are data, not markup
    if run.get("git"):
        head.add_row(
            "[bold]git[/]", f"{run['git']['sha'][:12]}{' (dirty)' if run['git']['dirty'] else ''}"
        )
    head.add_row("[bold]argv[/]", Text(" ".join(run.get("argv") or [])))
    head.add_row("[bold]config[/]", Text(orjson.dumps(run.get("config")).decode()))
    console.print(head)
    arts = Table("artifact", "kind", "records", "complete", "path", title="artifacts")
    for a in run.get("artifacts") or []:
        arts.add_row(
            *map(Text, (a["name"], a["kind"], str(a["records"]), str(a["complete"]))),
            Text(str(store.root / a["path"])),
        )
    console.print(arts)
    if run.get("inputs"):
        ins = Table("parent run", "input", "via", title="inputs")
        for i in run["inputs"]:
            ins.add_row(
                *(Text(i.get(k) or "") for k in ("run_id", "input", "via")),
            )
        console.print(ins)


@runs.command(
    "tail", epilog="\b\nExamples:\n  rlctl runs tail latest -f\n  rlctl runs tail RUN -n 50"
)
@click.argument("run_ref", metavar="RUN")
@click.option(
    "-n", "--lines", type=int, default=10, show_default=True, help="Last N metric events."
)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events until the run ends.")
@click.pass_context
def tail_cmd(ctx: click.Context, run_ref: str, lines: int, follow: bool) -> None:
    """A run's metric events (metrics.jsonl), as `step name value` lines."""
    store = get_store(ctx)
    rid = _latest(store) if run_ref == "latest" else store.match_run(run_ref)
    path = store.run_dir(rid) / "metrics.jsonl"
    pos = _print_last(path, lines)
    while follow:
        run = _synced_run(store, rid)
        pos = _print_from(path, pos)
        if run.get("status") != "running":
            sys.stderr.write(f"run {rid} {run.get('status')}\n")
            return
        time.sleep(1.0)


@runs.command(
    "plot",
    epilog="\b\nExamples:\n  rlctl runs plot latest --metric reward -o reward.png\n"
    "  rlctl runs plot RUN --metric loss --metric rewards/rlctl_math/mean -o curves.png",
)
@click.argument("run_ref", metavar="RUN")
@click.option("--metric", "metrics", multiple=True, required=True, help="Metric name (repeatable).")
@click.option("-o", "--output", required=True, metavar="PNG", help="Where to write the plot.")
@click.pass_context
def plot_cmd(ctx: click.Context, run_ref: str, metrics: tuple[str, ...], output: str) -> None:
    """Metric curves of a run, read back from the store: a PNG and a table on stderr. RUN
    `latest` is the newest run that logged every --metric."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    store = get_store(ctx)
    rid = _latest_with(store, metrics) if run_ref == "latest" else store.match_run(run_ref)
    rows = (
        Index(store)
        .query(
            "SELECT name, step, value FROM metrics WHERE run_id = ? AND list_contains(?, name) "
            "ORDER BY name, step",
            [rid, list(metrics)],
        )
        .rows
    )
    series: dict[str, list[tuple[int, float]]] = {m: [] for m in metrics}
    for name, step, value in rows:
        series[name].append((step, value))
    missing = [m for m, points in series.items() if not points]
    if missing:
        raise click.UsageError(f"run {rid} has no metric {', '.join(missing)}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise click.UsageError("plotting needs matplotlib: pip install 'rlctl[plot]'") from None
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, points in series.items():
        ax.plot([s for s, _ in points], [v for _, v in points], marker="o", label=name)
    ax.set_xlabel("step")
    ax.set_title(rid)
    ax.legend()
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    plt.close(fig)
    table = Table(title=Text(f"{rid} -> {output}"))
    for header in ("step", *metrics):
        table.add_column(Text(header))  # metric names are data, not markup
    steps = sorted({s for points in series.values() for s, _ in points})
    lookup = {m: dict(points) for m, points in series.items()}
    for step in steps:
        table.add_row(str(step), *(f"{lookup[m].get(step, float('nan')):.4g}" for m in metrics))
    Console(file=sys.stderr).print(table)


def _fmt(line: bytes) -> str:
    ev = orjson.loads(line)
    step = "" if ev.get("step") is None else ev["step"]
    return f"{ev.get('time', '')}\t{step}\t{ev.get('name')}\t{ev.get('value')}"


def _print_last(path: Path, n: int) -> int:
    if not path.exists():
        return 0
    last: deque[bytes] = deque(maxlen=n)
    pos = 0
    with open(path, "rb") as f:
        for ln in f:
            if not ln.endswith(b"\n"):
                break
            last.append(ln)
            pos += len(ln)
    for ln in last:
        click.echo(_fmt(ln))
    return pos


def _print_from(path: Path, pos: int) -> int:
    """Only whole lines: a line being appended is picked up on the next pass."""
    if not path.exists():
        return pos
    with open(path, "rb") as f:
        f.seek(pos)
        for ln in f:
            if not ln.endswith(b"\n"):
                break
            click.echo(_fmt(ln))
            pos += len(ln)
    return pos
