"""`rlctl sql`: the whole experiment history, one query away."""

from __future__ import annotations

import click

from rlctl.cli.context import get_store

EPILOG = """\b
Tables: runs, artifacts, lineage, metrics; one view per record kind over all stored artifacts:
prompts, pairs, rollouts, judged, logprob_diffs, train_samples, margin_logs, evals. JSON
columns (messages, meta, verdict, config, env) take DuckDB's ->> path. More queries (an eval
score walked back to its model, training run and pull among them): docs/cookbook.md.

\b
Examples:
  rlctl sql "SELECT command, status, started_at FROM runs ORDER BY started_at DESC LIMIT 5"
  rlctl sql "SELECT run_id, count(*) FROM prompts GROUP BY 1"
  rlctl sql "SELECT model, avg(reward) FROM judged JOIN runs USING (run_id) GROUP BY 1"
  rlctl sql "SELECT task, filter, round(100 * value, 2) AS pct, data FROM evals"
  rlctl sql --json "SELECT * FROM prompts LIMIT 3" | rlctl data validate --kind prompt
"""


@click.command(epilog=EPILOG)
@click.argument("query")
@click.option("--json", "fmt", flag_value="json", help="JSON lines on stdout (one object a row).")
@click.option("--csv", "fmt", flag_value="csv", help="CSV with a header row.")
@click.pass_context
def sql(ctx: click.Context, query: str, fmt: str | None) -> None:
    """Run a DuckDB SQL query over the store (synced with the run files first)."""
    from rlctl.cli.render import write
    from rlctl.errors import BadInput
    from rlctl.store import Index

    if not query.strip() or not query.strip().strip(";").strip():
        raise BadInput('no SQL given; e.g. rlctl sql "SELECT count(*) FROM runs"')
    result = Index(get_store(ctx)).query(query)
    write(result, fmt or "table")
