"""The store a command works on, from the root context: alone in its module so that `rlctl sql`
imports nothing else of the CLI's shared machinery (config files, option tables)."""

from __future__ import annotations

import click

from rlctl.store.layout import Store


def get_store(ctx: click.Context) -> Store:
    root = ctx.find_root().obj or {}
    return Store.open(root.get("store"))
