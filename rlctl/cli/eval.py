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
    endpoint_options,
    get_store,
    output_option,
    precision_options,
    resolve_config,
)
from rlctl.errors import BadInput
from rlctl.stages.engines import link_model, resolve_endpoint
from rlctl.stages.eval_tasks import FEWSHOT_FROM_TEST, SAMPLE
from rlctl.stages.streams import emit, open_inputs
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


def _task_options(f: Any) -> Any:
    """The options of `eval TASK`, shared by `eval suite` (where they are every task's
    defaults, which a suite entry may override)."""
    for option in reversed(_TASK_OPTIONS):
        f = option(f)
    return f


_TASK_OPTIONS = [
    click.option("--model", help="Local path or hub id (openai: the served model name)."),
    click.option("--backend", type=click.Choice(["hf", "vllm", "openai"]), help="Engine [hf]."),
    click.option(
        "--shots", type=click.IntRange(min=0), help="Few-shot examples [the task's default]."
    ),
    click.option(
        "--limit",
        type=FiniteFloat(min=0, min_open=True),
        help="First N documents (or a fraction < 1).",
    ),
    click.option("--batch-size", type=click.IntRange(min=1), help="hf/vllm batch size [8]."),
    click.option(
        "--apply-chat-template/--no-apply-chat-template",
        default=None,
        help="Render prompts with the model's chat template [off].",
    ),
    click.option(
        "--fewshot-as-multiturn/--no-fewshot-as-multiturn",
        default=None,
        help="Few-shot examples as chat turns [on with the chat template].",
    ),
    click.option("--system-instruction", help="System message for every prompt."),
    click.option(
        "--gen-kwargs", metavar="K=V,...", help="Generation overrides, e.g. max_gen_toks=64."
    ),
    click.option(
        "--seed", type=int, help="Seed for lm-eval's Python, numpy, torch and few-shot [0]."
    ),
    click.option(
        "--data",
        metavar="IN",
        help="Test documents: file, run id, latest:NAME, or 'sample' (rlctl's bundled sample).",
    ),
    click.option(
        "--fewshot-data",
        metavar="IN",
        help="Few-shot pool: a file, a run, or 'test' (the test documents, self excluded) "
        "[the task's few-shot split, pulled into the store].",
    ),
    precision_options("hf/vllm", "auto"),
    endpoint_options,
    click.option(
        "--concurrency", type=click.IntRange(min=1), help="openai: requests in flight [8]."
    ),
    click.option("--max-model-len", type=int, help="vllm: context length to allocate."),
    click.option(
        "--allow-code-eval",
        is_flag=True,
        default=None,
        help="Let code tasks (mbpp, humaneval) run model-written code to score it (in rlctl's "
        "sandbox).",
    ),
    click.option(
        "--predict-only", is_flag=True, default=None, help="Generate and store samples; no metrics."
    ),
]


@eval_.command("run", epilog=RUN_EPILOG)
@click.argument("task")
@_task_options
@output_option
@config_options
@click.pass_context
def run_task(ctx: click.Context, task: str, output: str | None, **_: object) -> None:
    """Run one lm-eval task (or group): scores to the store, per-sample outputs as rollouts."""
    from rlctl.stages.evaluate import DEFAULTS

    conf = resolve_config(ctx, DEFAULTS)
    store, endpoint, manager = _setup(ctx, conf)
    info, offline = _prepare(store, manager, conf, task)
    _engine_guard(conf)
    with Run(store, "eval", config=conf, seed=conf["seed"]) as run:
        link_model(run, conf, endpoint)
        from rlctl.stages.evaluate import make_lm

        task = _task_and_data(store, run, info, conf, offline, manager)  # bad data: before
        lm = make_lm(conf)  # the model loads
        scores, samples = _evaluate_task(run, info, conf, task, lm, "task")
        _finish(run, conf, scores, samples, output)


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
    from rlctl.stages.eval_suite import load_suite
    from rlctl.stages.evaluate import DEFAULTS

    name, entries = load_suite(Path(file))
    conf = resolve_config(ctx, DEFAULTS)
    store, endpoint, manager = _setup(ctx, conf)
    prepared = []
    for i, entry in enumerate(entries):
        task_conf = {**conf, **{k: v for k, v in entry.items() if k != "task"}}
        try:
            _settle_task_conf(task_conf)
            prepared.append((task_conf, *_prepare(store, manager, task_conf, entry["task"])))
        except BadInput as e:
            raise BadInput(f"{file}: tasks[{i}] ({entry['task']}): {e}") from e
    _engine_guard(conf)
    config = {**conf, "suite": {"file": str(Path(file).absolute()), "name": name}}
    # per task, what differs from the command's settings (its shots, the data it was given)
    config["suite"]["tasks"] = [
        {"task": e["task"], **{k: v for k, v in c.items() if conf.get(k) != v}}
        for e, (c, *_) in zip(entries, prepared, strict=True)
    ]
    with Run(store, "eval", config=config, seed=conf["seed"]) as run:
        link_model(run, conf, endpoint)
        from rlctl.stages.evaluate import make_lm

        tasks = [
            _task_and_data(store, run, info, c, offline, manager, f"task-{i}")
            for i, (c, info, offline) in enumerate(prepared)
        ]
        lm = make_lm(conf)
        scores, samples = [], []
        for i, ((task_conf, info, _), task) in enumerate(zip(prepared, tasks, strict=True)):
            log.info("eval suite %s: %s (%d of %d)", name, info.name, i + 1, len(prepared))
            got = _evaluate_task(run, info, task_conf, task, lm, f"task-{i}")
            scores += got[0]
            samples += got[1]
        _finish(run, conf, scores, samples, output, suite=True)


def _setup(ctx: click.Context, conf: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(store, endpoint, lm-eval's task manager), the command-wide settings checked first."""
    from rlctl.logs import quiet_transformers
    from rlctl.net import prefer_offline_hub
    from rlctl.stages.evaluate import quiet_lm_eval

    _settle_task_conf(conf)
    store = get_store(ctx)
    endpoint = None
    if conf["backend"] == "openai":
        endpoint = resolve_endpoint(store, conf)
    elif not conf["model"]:
        raise BadInput(f"--backend {conf['backend']} needs --model PATH")
    if conf["backend"] != "openai":
        from rlctl.models import require_model_path

        require_model_path(conf["model"])
    prefer_offline_hub()
    quiet_lm_eval()
    quiet_transformers()
    from lm_eval.tasks import TaskManager

    return store, endpoint, TaskManager()


def _settle_task_conf(conf: dict[str, Any]) -> None:
    """One task's settings, checked before anything loads (a suite checks every entry)."""
    from rlctl.stages.evaluate import parse_gen_kwargs, settle

    settle(conf)
    limit = conf["limit"]
    if limit is not None:
        if limit <= 0:
            raise BadInput("--limit must be positive (N documents, or a fraction below 1)")
        conf["limit"] = int(limit) if float(limit).is_integer() else limit
    parse_gen_kwargs(conf["gen_kwargs"])


def _prepare(store: Any, manager: Any, conf: dict[str, Any], task: str) -> tuple[Any, bool]:
    """(the task, whether it reads local data), its data chosen into `conf`, or one line."""
    from rlctl.stages.eval_tasks import find_task
    from rlctl.store.refs import resolve_inputs

    hub_ok = os.environ.get("HF_HUB_OFFLINE", "").lower() not in ("1", "true", "yes", "on")
    info = find_task(manager, task)
    if info.unsafe_code and not (conf["allow_code_eval"] or conf["predict_only"]):
        raise BadInput(
            f"eval {task}: lm-eval scores it by running model-written code (rlctl runs it in "
            "its sandbox); pass --allow-code-eval to do so, or --predict-only to keep the "
            "samples unscored"
        )
    for ref in (conf["data"], conf["fewshot_data"]):
        if ref and ref not in (FEWSHOT_FROM_TEST, SAMPLE):  # one line now, not after the build
            resolve_inputs(store, [ref], kind="prompt")
    offline = bool(conf["data"]) or not hub_ok
    if offline:
        choose_offline_data(store, info, conf)
    return info, offline


def _engine_guard(conf: dict[str, Any]) -> None:
    if conf["backend"] == "vllm":
        from rlctl.stages.streams import guard_stdout

        guard_stdout()  # vLLM's engine logs to stdout; ours carries records only


def choose_offline_data(store: Any, info: Any, conf: dict[str, Any]) -> None:
    """Name the test and few-shot data of an offline eval in `conf` (so the run records it),
    or stop: a sample or a cut is never scored as the task unless asked for (`--data sample`,
    or the run id), and few-shot examples come from the task's own few-shot split, as lm-eval
    draws them, unless `--fewshot-data` says else."""
    from rlctl.stages.eval_tasks import bundled, fewshot_split, no_data_message, stored_pull

    src = info.adapter.source if info.adapter else None
    split = info.test_split
    if conf["data"] == SAMPLE:
        found = bundled(info)
        if found is None:
            raise BadInput(f"--data {SAMPLE}: rlctl bundles no {info.name} '{split}' data")
        conf["data"] = str(found[0])
        kind = "whole split" if found[1].whole else "a SAMPLE, not the whole split"
        log.warning("eval %s: scoring rlctl's bundled %s (%s)", info.name, found[1].file, kind)
    elif not conf["data"]:
        pulled = stored_pull(store, info)
        found = bundled(info)
        if pulled is None and found is not None and found[1].whole:
            conf["data"] = str(found[0])
            log.warning(
                "eval: the hub is unreachable; scoring the whole '%s' split rlctl bundles (%s)",
                split,
                found[1].file,
            )
        elif pulled is None:
            raise BadInput(no_data_message(info))
        elif pulled.partial:
            raise BadInput(
                f"eval {info.name}: the hub is unreachable and the newest stored '{split}' pull "
                f"of {src} (run {pulled.run_id}) is {pulled.partial}, not the task's split; "
                f"pull the whole split ('rlctl data pull {src} --split {split} --from FILE'), "
                f"or pass --data {pulled.run_id} to score that sample on purpose"
            )
        else:
            conf["data"] = pulled.run_id
            log.warning(
                "eval: the hub is unreachable; scoring the '%s' split of run %s",
                split,
                pulled.run_id,
            )
    shots = conf["shots"] if conf["shots"] is not None else info.default_shots
    if not shots or info.fixed_fewshot or conf["fewshot_data"]:
        return
    split = fewshot_split(info) or "train"
    pulled = stored_pull(store, info, split)
    if pulled is not None and not pulled.partial:
        conf["fewshot_data"] = pulled.run_id
        log.info("eval: few-shot examples from the '%s' split of run %s", split, pulled.run_id)
        return
    found = bundled(info, split)
    if found is not None and found[1].whole:
        conf["fewshot_data"] = str(found[0])
        log.info("eval: few-shot examples from the whole '%s' split rlctl bundles", split)
        return
    pull = f" ('rlctl data pull {src} --split {split} --from FILE')" if src else ""
    raise BadInput(
        f"eval {info.name} at {shots} shots: lm-eval draws its few-shot examples from the "
        f"'{split}' split, and none is given; pass --fewshot-data FILE|RUN{pull}, or "
        f"--fewshot-data {FEWSHOT_FROM_TEST} to draw them from the test documents (then the "
        "numbers are not comparable to published ones)"
    )


def _task_and_data(
    store: Any,
    run: Run,
    info: Any,
    conf: dict[str, Any],
    offline: bool,
    manager: Any,
    slot: str = "task",
) -> tuple[str, Any, Any]:
    """(what to hand lm-eval: a task name or a generated YAML's path, what it will read, the
    task manager that finds it: for a group, one that also reads the generated files)."""
    from rlctl.stages.eval_tasks import hub_data, offline_task

    if not offline:
        return info.name, hub_data(info), manager

    def open_records(ref: str) -> tuple[Any, str]:
        """Records of `ref`, with lineage, and where they came from (a run or a file)."""
        before = len(run.info["inputs"])
        reader = open_inputs(store, run, (ref,), "prompt", validate=False)
        added = [i for i in run.info["inputs"][before:] if i.get("input")]
        if added and added[0].get("run_id"):
            return reader, f"store:{added[0]['run_id']}"
        return reader, f"file:{Path(added[0]['input'] if added else ref).absolute()}"

    out = run.artifact_dir / slot
    yaml_path, data = offline_task(info, conf["data"], conf, out, open_records)
    run.register_path(slot, "lm_eval_task", out)
    for name in data.missing:
        log.warning("eval %s: the data has no documents for %s; left out", info.name, name)
    if info.is_group:
        from lm_eval.tasks import TaskManager

        return info.name, data, TaskManager(include_path=str(out))
    return str(yaml_path), data, manager


def _evaluate_task(
    run: Run,
    info: Any,
    conf: dict[str, Any],
    task: tuple[str, Any, Any],
    lm: Any,
    slot: str,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One task (`_task_and_data`'s spec, data and manager) through lm-eval: (score records,
    sample records); its raw results.json is an artifact named after `slot`."""
    import orjson

    from rlctl.stages.evaluate import evaluate, sample_records, score_records

    spec, data, manager = task
    model = str(conf["model"])
    run.info["config"]["model"] = model
    results = evaluate(spec, manager, lm, conf, sandbox_code=info.unsafe_code)
    samples = results.pop("samples", {})
    results.pop("pretty_env_info", None)
    name = "results" if slot == "task" else f"results-{slot}"
    path = run.artifact_dir / f"{name}.json"
    path.write_bytes(orjson.dumps(results, default=str, option=orjson.OPT_INDENT_2))
    run.register_path(name, "lm_eval_results", path, "json")
    scores = score_records(results, conf, model, data)
    rows = list(sample_records(samples, results.get("configs", {}), model, conf["backend"], data))
    return scores, rows


def _finish(
    run: Run,
    conf: dict[str, Any],
    scores: list[dict[str, Any]],
    samples: list[dict[str, Any]],
    output: str | None,
    suite: bool = False,
) -> None:
    """Scores and samples into the store (samples streamed when piped), the table on stderr."""
    from rlctl.cli.render import write_table
    from rlctl.store import QueryResult

    emit(run, scores, "eval", name="scores", stdout=False)
    for s in scores:
        if s["value"] is not None:
            at = f"@{s['shots']}shot" if suite else ""
            run.metric(f"{s['task']}/{s['metric']},{s['filter']}{at}", s["value"])
    n = emit(run, iter(samples), "rollout", name="samples", output=output)
    run.metric("samples", n)
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
    from lm_eval.tasks import TaskManager

    manager = TaskManager()
    for name, entry in manager.task_index.items():
        if not fnmatch.fnmatch(name, pattern):
            continue
        offline = (entry.cfg or {}).get("dataset_path") in ADAPTERS
        click.echo(f"{name}\t{entry.kind.name.lower()}" + ("\toffline" if offline else ""))
