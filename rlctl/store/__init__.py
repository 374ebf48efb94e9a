"""The artifact store (DESIGN.md section 5): run folders are the truth, DuckDB indexes them."""

from rlctl.store.index import Index, QueryResult
from rlctl.store.layout import Store, resolve_root
from rlctl.store.refs import Input, check_upstream, resolve_inputs
from rlctl.store.run import Artifact, Run

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
