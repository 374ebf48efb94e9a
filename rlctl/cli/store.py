"""`rlctl store path|rebuild`."""

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
    "rebuild", epilog="\b\nExample:\n  rlctl store rebuild && rlctl sql 'SELECT count(*) FROM runs'"
)
@click.pass_context
def rebuild_cmd(ctx: click.Context) -> None:
    """Delete the index and derive it again from the run files: same query answers."""
    from rlctl.store import Index

    s = get_store(ctx)
    n = Index(s).rebuild()
    sys.stderr.write(f"index rebuilt from {n} runs: {s.index_path}\n")
