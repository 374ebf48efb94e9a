"""`rlctl eval TASK` and `eval suite FILE` as library calls: the task found and its data
chosen (offline data named, never chosen silently) before any model loads, lm-eval run on
it, scores and per-sample records stored in one eval run."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from rlctl.errors import BadInput
from rlctl.stages.engines import link_model, resolve_endpoint, say_unread
from rlctl.stages.eval_index import task_manager
from rlctl.stages.eval_tasks import FEWSHOT_FROM_TEST, SAMPLE
from rlctl.stages.evaluate import DEFAULTS, OPTIONS
from rlctl.stages.streams import emit, open_inputs
from rlctl.store import Run, Store

log = logging.getLogger("rlctl")

__all__ = ["DEFAULTS", "OPTIONS", "choose_offline_data", "eval_suite", "eval_task"]


def eval_task(
    store: Store, conf: dict[str, Any], task: str, output: str | None = None
) -> list[dict[str, Any]]:
    """One lm-eval task (or group) as an eval run; returns its score records."""
    endpoint, manager = setup(store, conf)
    info, offline = _prepare(store, manager, conf, task)
    _engine_guard(conf)
    with Run(store, "eval", config=conf, seed=conf["seed"]) as run:
        link_model(run, conf, endpoint)
        from rlctl.stages.evaluate import make_lm

        task = _task_and_data(store, run, info, conf, offline, manager)  # bad data: before
        lm = make_lm(conf)  # the model loads
        scores, samples = _evaluate_task(run, info, conf, task, lm, "task")
        _finish(run, conf, scores, samples, output)
    return scores


def eval_dry_run(
    store: Store,
    run: Run,
    conf: dict[str, Any],
    task: str | None = None,
    suite: Path | None = None,
) -> list[tuple[str, str]]:
    """`--dry-run` through `run` (a `DryRun`): the task(s) found, the model or endpoint
    checked, the offline data read and converted as the run would (into the dry run's
    temporary folder); nothing loads, nothing is recorded. Returns the findings."""
    from rlctl.stages import dry_run

    if suite is not None:
        _, _, endpoint, manager, prepared = _prepare_suite(store, conf, suite)
    else:
        endpoint, manager = setup(store, conf)
        prepared = [(conf, *_prepare(store, manager, conf, str(task)))]
    found = [dry_run.generator(conf, endpoint)]
    for i, (task_conf, info, offline) in enumerate(prepared):
        _, data, _ = _task_and_data(store, run, info, task_conf, offline, manager, f"t{i}")
        shots = task_conf["shots"]
        shots = "the task's default" if shots is None else shots
        found.append((f"task {info.name}", f"{data.describe()}; shots: {shots}"))
    return found


def _prepare_suite(
    store: Store, conf: dict[str, Any], file: Path
) -> tuple[str, list[dict[str, Any]], Any, Any, list[tuple[dict[str, Any], Any, bool]]]:
    """(name, entries, endpoint, task manager, each entry's settings, task and offline flag),
    every entry checked before anything loads."""
    from rlctl.stages.eval_suite import load_suite

    name, entries = load_suite(Path(file))
    endpoint, manager = setup(store, conf)
    prepared = []
    for i, entry in enumerate(entries):
        task_conf = {**conf, **{k: v for k, v in entry.items() if k != "task"}}
        try:
            _settle_task_conf(task_conf)
            prepared.append((task_conf, *_prepare(store, manager, task_conf, entry["task"])))
        except BadInput as e:
            raise BadInput(f"{file}: tasks[{i}] ({entry['task']}): {e}") from e
    return name, entries, endpoint, manager, prepared


def eval_suite(
    store: Store, conf: dict[str, Any], file: Path, output: str | None = None
) -> list[dict[str, Any]]:
    """A suite file's tasks on one model, loaded once, as one eval run; returns the scores."""
    name, entries, endpoint, manager, prepared = _prepare_suite(store, conf, file)
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
    return scores


def setup(store: Store, conf: dict[str, Any]) -> tuple[Any, Any]:
    """(endpoint, lm-eval's task manager), the command-wide settings checked first."""
    from rlctl.logs import quiet_transformers
    from rlctl.net import prefer_offline_hub
    from rlctl.stages.evaluate import quiet_lm_eval, unread_engine_options

    _settle_task_conf(conf)
    say_unread(conf["backend"], unread_engine_options(conf))
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
    return endpoint, task_manager()


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
        return info.name, data, task_manager(out)
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
    """Scores and samples into the store (samples streamed when piped)."""
    emit(run, scores, "eval", name="scores", stdout=False)
    for s in scores:
        if s["value"] is not None:
            at = f"@{s['shots']}shot" if suite else ""
            run.metric(f"{s['task']}/{s['metric']},{s['filter']}{at}", s["value"])
    n = emit(run, iter(samples), "rollout", name="samples", output=output)
    run.metric("samples", n)
