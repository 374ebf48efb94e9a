"""`rlctl slurm submit|status|cancel`: stages as Slurm jobs, recorded in the store."""

from __future__ import annotations

import time
from typing import Any

import click

from rlctl.cli.common import get_store
from rlctl.store import Run


@click.group()
def slurm() -> None:
    """Render, submit and follow Slurm jobs that run rlctl stages."""


SUBMIT_EPILOG = """\b
Examples:
  rlctl slurm submit configs/slurm/pipelines/dpo-loop.yaml --cluster configs/slurm/a100.yaml
  rlctl slurm submit grpo.yaml --partition gpu --account lab --gpus-per-node 8 --time 12:00:00
  rlctl slurm submit eval.yaml --set 'checkpoints=[ckpt-100,ckpt-200]' --dry-run

\b
A pipeline file names a template (pipeline, grpo-vllm, eval-array, multinode-train), its
variables, and `cluster:` settings or a cluster file (partition, account, qos, nodes,
gpus_per_node, cpus_per_task, mem, time, modules, setup, env, venv, sbatch). Precedence: flags >
--set > pipeline > cluster file. The job's runs land in this store (RLCTL_STORE is exported),
so `rlctl runs ls --job ID` lists them. Prints the job id on stdout.
"""


@slurm.command("submit", epilog=SUBMIT_EPILOG)
@click.argument("pipeline", type=click.Path(dir_okay=False))
@click.option("--cluster", "cluster_file", metavar="FILE", help="Cluster settings (YAML).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override (repeatable).")
@click.option("--partition", help="Slurm partition.")
@click.option("--account", help="Slurm account.")
@click.option("--qos", help="Slurm QOS.")
@click.option("--nodes", type=int, help="Nodes.")
@click.option("--gpus-per-node", type=int, help="GPUs per node.")
@click.option("--cpus-per-task", type=int, help="CPUs per task.")
@click.option("--time", "time_limit", help="Time limit, e.g. 04:00:00.")
@click.option("--dry-run", is_flag=True, help="Print the rendered script; submit nothing.")
@click.pass_context
def submit(
    ctx: click.Context,
    pipeline: str,
    cluster_file: str | None,
    sets: tuple[str, ...],
    time_limit: str | None,
    dry_run: bool,
    **flags: Any,
) -> None:
    """Render PIPELINE.yaml into an sbatch script and submit it."""
    import sys

    from rlctl import config as cfg
    from rlctl.slurm import jobs
    from rlctl.slurm.render import load_spec, render

    store = get_store(ctx)
    flags["time"] = time_limit
    spec = load_spec(pipeline, cluster_file, cfg.parse_sets(sets), flags)
    script = render(spec, store.root.absolute())
    if dry_run:
        sys.stdout.write(script)
        return
    with Run(store, "slurm submit", config=spec) as run:
        job_id = jobs.submit_run(run, store, spec, script)
    click.echo(job_id)
    click.echo(f"rlctl: job {job_id} ({spec['name']}) submitted; run {run.run_id}", err=True)


@slurm.command(
    "status",
    epilog="\b\nExamples:\n  rlctl slurm status\n  rlctl slurm status 4242 --wait --timeout 3600",
)
@click.argument("refs", nargs=-1, metavar="[JOB|RUN]...")
@click.option("--wait", is_flag=True, help="Poll until every job has ended.")
@click.option("--poll", type=float, default=2.0, show_default=True, help="Seconds between polls.")
@click.option("--timeout", type=float, help="Give up waiting after this many seconds (exit 1).")
@click.option("--json", "as_json", is_flag=True, help="JSON lines on stdout.")
@click.pass_context
def status(
    ctx: click.Context,
    refs: tuple[str, ...],
    wait: bool,
    poll: float,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Jobs submitted from this store, their state, and the runs each one made."""
    from rlctl.errors import RlctlError
    from rlctl.slurm import jobs

    store = get_store(ctx)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        found = [jobs.refresh(store, r) for r in jobs.submit_runs(store, refs)]
        pending = [r for r in found if r["slurm"]["state"] not in jobs.TERMINAL]
        if not wait or not pending:
            break
        if deadline is not None and time.monotonic() > deadline:
            ids = ", ".join(r["slurm"]["job_id"] for r in pending)
            raise RlctlError(f"jobs {ids} still not finished after {timeout:g} s")
        time.sleep(poll)
    _show(store, found, as_json)


def _show(store: Any, found: list[dict[str, Any]], as_json: bool) -> None:
    from rlctl.cli.render import write
    from rlctl.store import Index, QueryResult

    made: dict[str, list[tuple[str, str, str]]] = {}
    if found:
        rows = (
            Index(store)
            .query(
                "SELECT slurm_job, run_id, command, status FROM runs "
                "WHERE slurm_job IS NOT NULL AND command <> 'slurm submit' ORDER BY started_at"
            )
            .rows
        )
        for job, rid, command, st in rows:
            made.setdefault(job, []).append((rid, command, st))
    cols = ["job", "name", "state", "submit_run", "runs", "tasks"]
    out = []
    for r in found:
        s = r["slurm"]
        runs = made.get(s["job_id"], [])
        tasks = ", ".join(f"{t['id']}:{t['state']}" for t in s.get("tasks") or [])
        summary = ", ".join(f"{c} {st}" for _, c, st in runs)
        out.append([s["job_id"], s.get("name"), s["state"], r["run_id"], summary, tasks])
    write(QueryResult(cols, ["VARCHAR"] * len(cols), out), "json" if as_json else "table")


@slurm.command(
    "cancel",
    epilog="\b\nExamples:\n  rlctl slurm cancel 4242\n  rlctl slurm cancel RUN --graceful",
)
@click.argument("refs", nargs=-1, required=True, metavar="JOB|RUN...")
@click.option(
    "--graceful",
    is_flag=True,
    help="SIGTERM to the running stage: training saves a checkpoint, then the job ends.",
)
@click.option(
    "--timeout",
    type=float,
    help="Seconds to wait for the jobs to end [30; 900 with --graceful].",
)
@click.pass_context
def cancel(
    ctx: click.Context, refs: tuple[str, ...], graceful: bool, timeout: float | None
) -> None:
    """Cancel jobs, and record their final state once the controller reports it."""
    from rlctl.errors import RlctlError
    from rlctl.slurm import jobs

    store = get_store(ctx)
    found = jobs.submit_runs(store, refs)
    for r in found:
        jobs.cancel(r["slurm"]["job_id"], graceful=graceful)
    deadline = time.monotonic() + (timeout or (900 if graceful else 30))
    while time.monotonic() < deadline:
        found = [jobs.refresh(store, r) for r in found]
        if all(r["slurm"]["state"] in jobs.TERMINAL for r in found):
            break
        time.sleep(0.5)
    for r in found:
        click.echo(f"rlctl: job {r['slurm']['job_id']}: {r['slurm']['state']}", err=True)
    if not all(r["slurm"]["state"] in jobs.TERMINAL for r in found):
        raise RlctlError("scancel was sent, but the controller has not ended every job yet")
