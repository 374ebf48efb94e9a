"""`rlctl store path|gc|compact|rebuild`."""

from __future__ import annotations

import sys

import click

from rlctl.cli.common import get_store


@click.group()
def store() -> None:
    """The artifact store: run folders (the truth) and the DuckDB index derived from them."""


@store.command("path", epilog="\b\nExample:\n  du -sh $(rlctl store path)")
@click.pass_context
def path_cmd(ctx: click.Context) -> None:
    """Print the store's directory (--store, else $RLCTL_STORE, else ./.rlctl)."""
    click.echo(get_store(ctx).root)


@store.command(
    "gc",
    epilog="\b\nExamples:\n  rlctl store gc --dry-run\n  rlctl store gc --failed",
)
@click.option(
    "--failed",
    is_flag=True,
    help="Also remove whole failed and interrupted runs that nothing can use (see below).",
)
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.pass_context
def gc_cmd(ctx: click.Context, failed: bool, dry_run: bool) -> None:
    """Remove partial artifacts and temp files of ended runs (and, with --failed, failed runs).

    --failed never removes a run a later command can use: one holding checkpoints (--resume),
    one that registered an endpoint (a stopped 'serve vllm'), one with complete artifacts, or
    one that another run read (lineage). Each kept run is listed with its reason.
    """
    from rlctl.store.gc import gc

    s = get_store(ctx)
    report = gc(s, failed=failed, dry_run=dry_run)
    for rid, why in report.kept.items():
        sys.stderr.write(f"keep {rid}: {why}\n")
    for path in report.removed:
        sys.stderr.write(f"{'would remove' if dry_run else 'removed'} {path}\n")
    verb = "would free" if dry_run else "freed"
    kept = f", {len(report.kept)} failed or interrupted runs kept" if report.kept else ""
    sys.stderr.write(f"{len(report.removed)} paths, {verb} {report.bytes / 2**20:.1f} MiB{kept}\n")


@store.command(
    "compact",
    epilog="\b\nExamples:\n  rlctl store compact --dry-run\n  rlctl store compact && du -sh .rlctl",
)
@click.option("--dry-run", is_flag=True, help="Only list the files that would be converted.")
@click.pass_context
def compact_cmd(ctx: click.Context, dry_run: bool) -> None:
    """Rewrite the JSONL artifacts of ended runs as Parquet (zstd), the format new artifacts
    are stored in: record for record, run.json and the readers' inputs updated."""
    from rlctl.store.compact import compact

    report = compact(get_store(ctx), dry_run=dry_run)
    for old, new in report.converted:
        sys.stderr.write(f"{'would convert' if dry_run else 'converted'} {old} -> {new.name}\n")
    mib = report.bytes_before / 2**20
    after = "" if dry_run else f" -> {report.bytes_after / 2**20:.1f} MiB"
    n = len(report.missing)
    gone = f"; {n} listed file{'s' * (n > 1)} missing (left as listed)" if n else ""
    sys.stderr.write(f"{len(report.converted)} artifacts, {mib:.1f} MiB{after}{gone}\n")


@store.command(
    "rebuild", epilog="\b\nExample:\n  rlctl store rebuild && rlctl sql 'SELECT count(*) FROM runs'"
)
@click.pass_context
def rebuild_cmd(ctx: click.Context) -> None:
    """Delete the index and derive it again from the run files: same query answers."""
    from rlctl.store import Index

    s = get_store(ctx)
    n = Index(s).rebuild()
    sys.stderr.write(f"index rebuilt from {n} runs: {s.index_path}\n")
