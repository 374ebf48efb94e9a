"""The artifact store (DESIGN.md section 5): run folders are the truth, DuckDB indexes them.

Names are loaded on first use, so `rlctl sql` does not import what only writers need."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlctl.store.index import Index, QueryResult
    from rlctl.store.layout import Store, resolve_root
    from rlctl.store.refs import Input, check_upstream, resolve_inputs
    from rlctl.store.run import Artifact, Run

_WHERE = {
    "Artifact": "run",
    "Index": "index",
    "Input": "refs",
    "QueryResult": "index",
    "Run": "run",
    "Store": "layout",
    "check_upstream": "refs",
    "resolve_inputs": "refs",
    "resolve_root": "layout",
}

__all__ = [
    "Artifact",
    "Index",
    "Input",
    "QueryResult",
    "Run",
    "Store",
    "check_upstream",
    "resolve_inputs",
    "resolve_root",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'rlctl.store' has no attribute {name!r}")
    return getattr(importlib.import_module(f"rlctl.store.{_WHERE[name]}"), name)
