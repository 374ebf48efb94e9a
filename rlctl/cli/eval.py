"""`rlctl eval TASK`: lm-evaluation-harness, recorded; `eval compare` and `eval tasks`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from rlctl.cli.common import (
    config_options,
    dry_run,
    get_store,
    output_option,
    resolve_config,
    stage_options,
)
from rlctl.errors import BadInput

log = logging.getLogger("rlctl")


class EvalGroup(click.Group):
    """`rlctl eval TASK ...` runs a task; `compare` and `tasks` are subcommands. A task that
    shares a subcommand's name is reached as `rlctl eval run NAME`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=EvalGroup)
def eval_() -> None:
    """Evaluate with lm-evaluation-harness: `rlctl eval TASK`, `eval compare`, `eval tasks`."""


RUN_EPILOG = """\b
Examples:
  rlctl eval gsm8k --model Qwen/Qwen3-1.7B-Base --shots 8 --backend vllm
  rlctl eval gsm8k --model ./ckpt --shots 0 --data latest:data-pull --limit 50
  rlctl eval gsm8k_cot --backend openai --endpoint latest --apply-chat-template
  rlctl eval gsm8k --model ./ckpt --shots 0 | rlctl judge --judge math --mode strict
  rlctl eval ifeval --model M --gen-kwargs max_gen_toks=1024,temperature=0

\b
Data: the hub when it is reachable; otherwise (or with --data) local records, either in the
task's own columns or prompt records of 'rlctl data pull' (gsm8k, mbpp), read through a
generated task YAML that keeps lm-eval's prompt, filters and metrics. Scores go to the `evals`
view (`rlctl sql "SELECT * FROM evals"`) and say which data they were computed on; per-sample
outputs are rollout records, streamed when piped, so any judge can re-score them.
"""


def _task_options(f: Any) -> Any:
    """The options of `eval TASK`, shared by `eval suite` (where they are every task's
    defaults, which a suite entry may override)."""
    from rlctl.stages.evaluate import OPTIONS

    return stage_options(OPTIONS)(f)


@eval_.command("run", epilog=RUN_EPILOG)
@click.argument("task")
@_task_options
@output_option
@config_options
@click.pass_context
def run_task(ctx: click.Context, task: str, output: str | None, **_: object) -> None:
    """Run one lm-eval task (or group): scores to the store, per-sample outputs as rollouts."""
    from rlctl.stages.eval_run import DEFAULTS, OPTIONS, eval_dry_run, eval_task

    conf = resolve_config(ctx, DEFAULTS, OPTIONS)
    store = get_store(ctx)
    if dry_run(ctx, store, conf, DEFAULTS, lambda run: eval_dry_run(store, run, conf, task=task)):
        return
    scores = eval_task(store, conf, task, output)
    _print_scores(conf, scores)


SUITE_EPILOG = """\b
Examples:
  rlctl eval suite configs/eval/rlvr.yaml --model ./ckpt --backend vllm --allow-code-eval
  rlctl eval suite configs/eval/rlvr.yaml --backend openai --endpoint latest --allow-code-eval
  rlctl eval compare latest --baseline configs/baselines/qwen3-1.7b-base.yaml

\b
A suite file is YAML: `name`, and `tasks`, a list of entries, each `task` plus any of shots,
limit, data, fewshot_data, gen_kwargs, apply_chat_template, fewshot_as_multiturn,
system_instruction. The command's options are every entry's defaults; an entry's own keys win.
The model loads once; every task's scores and samples land in one eval run.
"""


@eval_.command("suite", epilog=SUITE_EPILOG)
@click.argument("file", type=click.Path(dir_okay=False))
@_task_options
@output_option
@config_options
@click.pass_context
def suite(ctx: click.Context, file: str, output: str | None, **_: object) -> None:
    """Run a suite of lm-eval tasks (a lab's eval protocol) on one model, as one run."""
    from rlctl.stages.eval_run import DEFAULTS, OPTIONS, eval_dry_run, eval_suite

    conf = resolve_config(ctx, DEFAULTS, OPTIONS)
    store = get_store(ctx)
    suite_file = Path(file)
    if dry_run(
        ctx, store, conf, DEFAULTS, lambda run: eval_dry_run(store, run, conf, suite=suite_file)
    ):
        return
    scores = eval_suite(store, conf, suite_file, output)
    _print_scores(conf, scores, suite=True)


def _print_scores(conf: dict[str, Any], scores: list[dict[str, Any]], suite: bool = False) -> None:
    """The scores as a table on stderr (stdout carries the sample records)."""
    from rlctl.cli.render import write_table
    from rlctl.store import QueryResult

    cols = ["task", "filter", "metric", "value", "stderr", "shots", "samples", "limit"]
    if suite:
        cols.append("data")
    rows = [
        [
            s["task"],
            s["filter"],
            s["metric"],
            _fmt(s["value"]),
            _fmt(s["stderr"]),
            s["shots"],
            s["samples"],
            "none" if s["limit"] is None else s["limit"],
            *([s["data"]] if suite else []),
        ]
        for s in scores
    ]
    model = f"{conf['model']} ({conf['backend']})"
    title = model if suite else f"{model} on {scores[0]['data'] if scores else '?'}"
    write_table(QueryResult(cols, ["VARCHAR"] * len(cols), rows), title=title, stderr=True)


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.4f}"


COMPARE_EPILOG = """\b
Examples:
  rlctl eval compare                                  # every finished eval run in the store
  rlctl eval compare 1a2b3c 4d5e6f --baseline configs/baselines/qwen3-1.7b-base.yaml
  rlctl eval compare latest --json | jq .

\b
Rows line up on (task, shots, filter, metric). Scores are in percent, with lm-eval's stderr.
A baseline file is YAML: name, unit (percent|fraction), scores: [{task, shots, filter, metric,
value}]; one Δ column per run (run minus baseline); `differs` names what else differs between
the runs on a row (limit, data and few-shot source, backend, chat template, generation).
"""


@eval_.command("compare", epilog=COMPARE_EPILOG)
@click.argument("runs", nargs=-1)
@click.option("--baseline", metavar="FILE", help="Published scores to compare against.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines on stdout (one object a row).")
@click.pass_context
def compare(ctx: click.Context, runs: tuple[str, ...], baseline: str | None, as_json: bool) -> None:
    """Eval runs side by side, and against a baseline table."""
    from rlctl.cli.render import rows_as_dicts, write_jsonl, write_table
    from rlctl.stages.eval_compare import load_baseline, table
    from rlctl.store import Index, QueryResult

    store = get_store(ctx)
    base = load_baseline(baseline) if baseline else None
    index = Index(store)
    if runs:
        ids = [_eval_run(store, index, r) for r in runs]
    else:
        found = index.query(
            "SELECT run_id FROM runs WHERE command = 'eval' AND status = 'ok' ORDER BY started_at"
        )
        ids = [r[0] for r in found.rows]
    if not ids and base is None:
        raise BadInput(f"no finished eval runs in {store.root}; run 'rlctl eval TASK' first")
    from rlctl.stages.eval_compare import COMPARED

    compared = ", ".join(f'"{c}"' for c in COMPARED)
    result = index.query(
        f"SELECT run_id, task, shots, filter, metric, value, stderr, model, {compared} "
        "FROM evals WHERE list_contains(?, run_id)",
        [ids],
    )
    cols, rows = table(rows_as_dicts(result), ids, base)
    out = QueryResult(cols, ["VARCHAR"] * len(cols), rows)
    if as_json:
        write_jsonl(out)
    else:
        write_table(out, title="eval scores (%)")


def _eval_run(store: Any, index: Any, ref: str) -> str:
    if ref == "latest":
        rows = index.query(
            "SELECT run_id FROM runs WHERE command = 'eval' AND status = 'ok' "
            "ORDER BY started_at DESC LIMIT 1"
        ).rows
        if not rows:
            raise BadInput(f"no finished eval run in {store.root}")
        return rows[0][0]
    rid = store.match_run(ref)
    run = store.read_run(rid) or {}
    if run.get("command") != "eval":
        raise BadInput(f"run {rid} is a '{run.get('command')}' run, not an eval")
    return rid


@eval_.command("tasks")
@click.argument("pattern", default="*")
def tasks(pattern: str) -> None:
    """lm-eval's tasks matching a glob; `offline` marks those rlctl can feed from its store."""
    import fnmatch

    from rlctl.stages.eval_tasks import ADAPTERS
    from rlctl.stages.evaluate import quiet_lm_eval

    quiet_lm_eval()
    from rlctl.stages.eval_index import task_manager

    manager = task_manager()
    for name, entry in manager.task_index.items():
        if not fnmatch.fnmatch(name, pattern):
            continue
        offline = (entry.cfg or {}).get("dataset_path") in ADAPTERS
        click.echo(f"{name}\t{entry.kind.name.lower()}" + ("\toffline" if offline else ""))
