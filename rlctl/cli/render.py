"""Query results for people (a rich table) and for scripts (JSON lines, CSV)."""

from __future__ import annotations

import csv
import sys
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from rlctl.store import QueryResult


def _plain(value: Any, sql_type: str) -> Any:
    """JSON columns come back from DuckDB as text; scripts want the structure back."""
    if value is None:
        return None
    if sql_type == "JSON" and isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def rows_as_dicts(result: QueryResult) -> list[dict[str, Any]]:
    return [
        {c: _plain(v, t) for c, t, v in zip(result.columns, result.types, row, strict=True)}
        for row in result.rows
    ]


def write_jsonl(result: QueryResult) -> None:
    out = sys.stdout.buffer
    for row in rows_as_dicts(result):
        out.write(orjson.dumps(row, default=str) + b"\n")
    out.flush()


def write_csv(result: QueryResult) -> None:
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(result.columns)
    for row in result.rows:
        w.writerow(["" if v is None else v for v in row])


def write_table(
    result: QueryResult, title: str | None = None, max_width: int = 60, stderr: bool = False
) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # Text, not str: data is never rich markup (a completion with "[/INST]" would not print)
    table = Table(title=title, show_lines=False, header_style="bold")
    for col in result.columns:
        table.add_column(Text(col), overflow="fold", max_width=max_width)
    for row in result.rows:
        table.add_row(*(Text("" if v is None else _short(v, max_width * 3)) for v in row))
    console = Console(soft_wrap=False, stderr=stderr)
    if not console.is_terminal:  # piped into a file or a pager: do not wrap at 80 columns
        console = Console(soft_wrap=False, stderr=stderr, width=max(console.width, 400))
    console.print(table)
    if not result.rows:
        console.print("(no rows)", style="dim")


def _short(value: Any, limit: int) -> str:
    text = (
        value.isoformat(sep=" ", timespec="seconds") if isinstance(value, datetime) else str(value)
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"


def write(result: QueryResult, fmt: str, title: str | None = None) -> None:
    {"json": write_jsonl, "csv": write_csv}.get(fmt, lambda r: write_table(r, title))(result)
