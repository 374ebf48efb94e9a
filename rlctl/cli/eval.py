"""`rlctl eval TASK`: lm-evaluation-harness, recorded; `eval compare` and `eval tasks`."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import click

from rlctl.cli.common import (
    FiniteFloat,
    config_options,
    emit,
    endpoint_options,
    get_store,
    link_model,
    open_inputs,
    output_option,
    precision_options,
    resolve_config,
    resolve_endpoint,
)
from rlctl.errors import BadInput
from rlctl.stages.eval_tasks import FEWSHOT_FROM_TEST
from rlctl.store import Run

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


@eval_.command("run", epilog=RUN_EPILOG)
@click.argument("task")
@click.option("--model", help="Local path or hub id (openai: the served model name).")
@click.option("--backend", type=click.Choice(["hf", "vllm", "openai"]), help="Engine [hf].")
@click.option("--shots", type=click.IntRange(min=0), help="Few-shot examples [the task's default].")
@click.option(
    "--limit",
    type=FiniteFloat(min=0, min_open=True),
    help="First N documents (or a fraction < 1).",
)
@click.option("--batch-size", type=click.IntRange(min=1), help="hf/vllm batch size [8].")
@click.option(
    "--apply-chat-template/--no-apply-chat-template",
    default=None,
    help="Render prompts with the model's chat template [off].",
)
@click.option(
    "--fewshot-as-multiturn/--no-fewshot-as-multiturn",
    default=None,
    help="Few-shot examples as chat turns [on with the chat template].",
)
@click.option("--system-instruction", help="System message for every prompt.")
@click.option("--gen-kwargs", metavar="K=V,...", help="Generation overrides, e.g. max_gen_toks=64.")
@click.option("--seed", type=int, help="Seed for lm-eval's Python, numpy, torch and few-shot [0].")
@click.option("--data", metavar="IN", help="Test documents: file, run id or latest:NAME.")
@click.option(
    "--fewshot-data",
    metavar="IN",
    help="Few-shot pool: a file, a run, or 'test' (the test documents, self excluded) "
    "[the task's few-shot split, pulled into the store].",
)
@precision_options("hf/vllm", "auto")
@endpoint_options
@click.option("--concurrency", type=click.IntRange(min=1), help="openai: requests in flight [8].")
@click.option("--max-model-len", type=int, help="vllm: context length to allocate.")
@click.option(
    "--allow-code-eval",
    is_flag=True,
    default=None,
    help="Let code tasks (mbpp, humaneval) run model-written code, unsandboxed, as lm-eval does.",
)
@click.option(
    "--predict-only", is_flag=True, default=None, help="Generate and store samples; no metrics."
)
@output_option
@config_options
@click.pass_context
def run_task(ctx: click.Context, task: str, output: str | None, **_: object) -> None:
    """Run one lm-eval task (or group): scores to the store, per-sample outputs as rollouts."""
    from rlctl.net import prefer_offline_hub
    from rlctl.stages.eval_tasks import find_task
    from rlctl.stages.evaluate import DEFAULTS, parse_gen_kwargs, settle

    conf = resolve_config(ctx, DEFAULTS)
    settle(conf)
    store = get_store(ctx)
    endpoint = None
    if conf["backend"] == "openai":
        endpoint = resolve_endpoint(store, conf)
    elif not conf["model"]:
        raise BadInput(f"--backend {conf['backend']} needs --model PATH")
    limit = conf["limit"]
    if limit is not None:
        if limit <= 0:
            raise BadInput("--limit must be positive (N documents, or a fraction below 1)")
        conf["limit"] = int(limit) if float(limit).is_integer() else limit
    parse_gen_kwargs(conf["gen_kwargs"])
    prefer_offline_hub()
    hub_ok = os.environ.get("HF_HUB_OFFLINE", "").lower() not in ("1", "true", "yes", "on")
    from rlctl.backends.generation import quiet_transformers
    from rlctl.stages.evaluate import quiet_lm_eval

    quiet_lm_eval()
    quiet_transformers()
    from lm_eval.tasks import TaskManager

    manager = TaskManager()
    info = find_task(manager, task)
    if info.unsafe_code and not (conf["allow_code_eval"] or conf["predict_only"]):
        raise BadInput(
            f"eval {task}: lm-eval scores it by running model-written code without a sandbox; "
            "pass --allow-code-eval, or --predict-only and score the samples with "
            "'rlctl judge --judge code' (sandboxed)"
        )
    if conf["backend"] != "openai":
        from rlctl.models import require_model_path

        require_model_path(conf["model"])
    from rlctl.store.refs import resolve_inputs

    for ref in (conf["data"], conf["fewshot_data"]):
        if ref and ref != FEWSHOT_FROM_TEST:  # one line here, not after the task is built
            resolve_inputs(store, [ref], kind="prompt")
    offline = bool(conf["data"]) or not hub_ok
    if offline:
        choose_offline_data(store, info, conf)
    if conf["backend"] == "vllm":
        from rlctl.cli.common import guard_stdout

        guard_stdout()  # vLLM's engine logs to stdout; ours carries records only
    with Run(store, "eval", config=conf, seed=conf["seed"]) as run:
        link_model(run, conf, endpoint)
        spec, data = _task_and_data(store, run, info, conf, offline)
        _run(run, spec, manager, conf, data, output)


def choose_offline_data(store: Any, info: Any, conf: dict[str, Any]) -> None:
    """Name the test and few-shot data of an offline eval in `conf` (so the run records it),
    or stop: a sample or a cut is never scored as the task, and few-shot examples come from
    the task's own few-shot split, as lm-eval draws them, unless `--fewshot-data` says else."""
    from rlctl.stages.eval_tasks import fewshot_split, no_data_message, stored_pull

    src = info.adapter.source if info.adapter else None
    if not conf["data"]:
        split = info.config.get("test_split") or "test"
        pulled = stored_pull(store, info)
        if pulled is None:
            raise BadInput(no_data_message(info))
        if pulled.partial:
            raise BadInput(
                f"eval {info.name}: the hub is unreachable and the newest stored '{split}' pull "
                f"of {src} (run {pulled.run_id}) is {pulled.partial}, not the task's split; "
                f"pull the whole split ('rlctl data pull {src} --split {split} --from FILE'), "
                f"or pass --data {pulled.run_id} to score that sample on purpose"
            )
        conf["data"] = pulled.run_id
        log.warning(
            "eval: the hub is unreachable; scoring the '%s' split of run %s", split, pulled.run_id
        )
    shots = conf["shots"] if conf["shots"] is not None else info.config.get("num_fewshot") or 0
    if not shots or info.fixed_fewshot or conf["fewshot_data"]:
        return
    split = fewshot_split(info) or "train"
    pulled = stored_pull(store, info, split)
    if pulled is not None and not pulled.partial:
        conf["fewshot_data"] = pulled.run_id
        log.info("eval: few-shot examples from the '%s' split of run %s", split, pulled.run_id)
        return
    pull = f"'rlctl data pull {src} --split {split} --from FILE'" if src else "a file"
    raise BadInput(
        f"eval {info.name} at {shots} shots: lm-eval draws its few-shot examples from the "
        f"'{split}' split, and none is given; pass --fewshot-data FILE|RUN ({pull}), or "
        f"--fewshot-data {FEWSHOT_FROM_TEST} to draw them from the test documents (then the "
        "numbers are not comparable to published ones)"
    )


def _task_and_data(
    store: Any, run: Run, info: Any, conf: dict[str, Any], offline: bool
) -> tuple[str, Any]:
    """(what to hand lm-eval: a task name or a generated YAML's path, what it will read)."""
    from rlctl.stages.eval_tasks import hub_data, offline_task

    if not offline:
        return info.name, hub_data(info)

    def open_records(ref: str) -> tuple[Any, str]:
        """Records of `ref`, with lineage, and where they came from (a run or a file)."""
        before = len(run.info["inputs"])
        reader = open_inputs(store, run, (ref,), "prompt", validate=False)
        added = [i for i in run.info["inputs"][before:] if i.get("input")]
        if added and added[0].get("run_id"):
            return reader, f"store:{added[0]['run_id']}"
        return reader, f"file:{Path(added[0]['input'] if added else ref).absolute()}"

    out = run.artifact_dir / "task"
    yaml_path, data = offline_task(info, conf["data"], conf, out, open_records)
    run.register_path("task", "lm_eval_task", out)
    return str(yaml_path), data


def _run(
    run: Run, spec: str, manager: Any, conf: dict[str, Any], data: Any, output: str | None
) -> None:
    import orjson

    from rlctl.cli.render import write_table
    from rlctl.stages.evaluate import evaluate, make_lm, sample_records, score_records
    from rlctl.store import QueryResult

    lm = make_lm(conf)
    model = str(conf["model"])
    run.info["config"]["model"] = model
    results = evaluate(spec, manager, lm, conf)
    samples = results.pop("samples", {})
    results.pop("pretty_env_info", None)
    (run.artifact_dir / "results.json").write_bytes(
        orjson.dumps(results, default=str, option=orjson.OPT_INDENT_2)
    )
    run.register_path("results", "lm_eval_results", run.artifact_dir / "results.json", "json")
    scores = score_records(results, conf, model, data)
    emit(run, scores, "eval", name="scores", stdout=False)
    for s in scores:
        if s["value"] is not None:
            run.metric(f"{s['task']}/{s['metric']},{s['filter']}", s["value"])
    n = emit(
        run,
        sample_records(samples, results.get("configs", {}), model, conf["backend"], data),
        "rollout",
        name="samples",
        output=output,
    )
    run.metric("samples", n)
    cols = ["task", "filter", "metric", "value", "stderr", "shots", "samples", "limit"]
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
        ]
        for s in scores
    ]
    title = f"{model} ({conf['backend']}) on {data.describe()}"
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
    from lm_eval.tasks import TaskManager

    manager = TaskManager()
    for name, entry in manager.task_index.items():
        if not fnmatch.fnmatch(name, pattern):
            continue
        offline = (entry.cfg or {}).get("dataset_path") in ADAPTERS
        click.echo(f"{name}\t{entry.kind.name.lower()}" + ("\toffline" if offline else ""))
