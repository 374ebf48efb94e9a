#!/usr/bin/env bash
# `make demo`: the main end-to-end job on the embedded store, offline, in a few seconds.
# Later stages (rollout, judge, train, eval) join this pipeline as they land.
set -euo pipefail
export RLCTL_STORE="${RLCTL_STORE:-$PWD/.rlctl}"
say() { printf '\n\033[1m$ %s\033[0m\n' "$*" >&2; }

say "rlctl data pull gsm8k --sample --limit 50 | rlctl data validate --kind prompt"
rlctl data pull gsm8k --sample --limit 50 | rlctl data validate --kind prompt

say "rlctl data pull hh-rlhf --sample --format parquet  (pair records, stored as Parquet)"
rlctl data pull hh-rlhf --sample --format parquet > /dev/null

say "rlctl sql: the runs just made, newest first"
rlctl sql "SELECT run_id, command, status, round(duration_s, 2) AS seconds
           FROM runs ORDER BY started_at DESC LIMIT 3"

say "rlctl sql: their artifacts and lineage"
rlctl sql "SELECT a.run_id, a.name, a.kind, a.format, a.records, a.complete
           FROM artifacts a ORDER BY a.created_at DESC LIMIT 3"
rlctl sql "SELECT l.run_id AS run, r.command, l.parent_run_id AS read_from, l.via
           FROM lineage l JOIN runs r USING (run_id) ORDER BY r.started_at DESC LIMIT 3"

say "rlctl sql: the records themselves, across every stored artifact"
rlctl sql "SELECT source, count(*) AS records, count(DISTINCT run_id) AS runs,
                  any_value(messages->>'\$[0].content')[:60] AS example
           FROM (SELECT * FROM prompts UNION ALL BY NAME SELECT * FROM pairs) GROUP BY 1"

echo >&2
echo "store: $RLCTL_STORE  (try: rlctl runs ls, rlctl runs show latest)" >&2
