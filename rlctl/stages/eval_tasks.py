"""Which lm-eval task to run, and on which data.

Offline, a task reads local JSONL through a generated task YAML that `include:`s lm-eval's own
task file and overrides only where the data comes from. Prompt, filters and metrics stay
lm-eval's (its `!function` references resolve next to the original file), the task keeps its
name (so scores compare with published ones), and the YAML is an artifact of the run: anyone can
re-run exactly that with `lm_eval --include_path DIR`.

Data can be in the task's own columns (GSM8K's `question`/`answer`) or prompt records that
`rlctl data pull` wrote; an adapter per upstream dataset turns the latter back into the former.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import orjson

from rlctl.errors import BadInput


def _user_text(rec: dict[str, Any]) -> str:
    if isinstance(rec.get("prompt"), str):
        return rec["prompt"]
    users = [m["content"] for m in rec.get("messages") or [] if m.get("role") == "user"]
    return users[-1] if users else ""


def _gsm8k_doc(rec: dict[str, Any]) -> dict[str, Any]:
    meta = rec.get("meta") or {}
    answer = meta.get("solution") or (
        f"#### {rec['reference']}" if rec.get("reference") is not None else None
    )
    if answer is None:
        raise BadInput(
            f"record {rec.get('id', '?')}: a GSM8K prompt record needs a reference (or "
            "meta.solution) to be scored; pull it with 'rlctl data pull gsm8k'"
        )
    return {"question": _user_text(rec), "answer": answer}


def _pulled_meta(rec: dict[str, Any], field: str, dataset: str, source: str) -> dict[str, Any]:
    """The `meta` a `data pull` record carries for its task's columns, or one line saying which
    field is missing and how to get it."""
    meta = rec.get("meta") or {}
    if field not in meta:
        raise BadInput(
            f"record {rec.get('id', '?')}: {dataset} prompt record without meta.{field} "
            f"(pulled by an older rlctl?); pull it again with 'rlctl data pull {source}'"
        )
    return meta


def _mbpp_doc(rec: dict[str, Any]) -> dict[str, Any]:
    meta = _pulled_meta(rec, "text", "MBPP", "mbpp")
    return {
        "task_id": meta.get("task_id"),
        "text": meta["text"],
        "code": meta.get("solution") or "",
        "test_list": meta.get("tests") or [],
        "test_setup_code": meta.get("test_setup_code") or "",
        "challenge_test_list": meta.get("challenge_tests") or [],
    }


def _ifeval_doc(rec: dict[str, Any]) -> dict[str, Any]:
    meta = _pulled_meta(rec, "instruction_id_list", "IFEval", "ifeval")
    return {
        "key": meta.get("key"),
        "prompt": _user_text(rec),
        "instruction_id_list": meta["instruction_id_list"],
        "kwargs": meta.get("kwargs") or [{} for _ in meta["instruction_id_list"]],
    }


@dataclass(frozen=True)
class Adapter:
    source: str | None  # the `rlctl data pull` name whose prompt records convert, if any
    columns: tuple[str, ...]  # the task's own columns: records with them are used as they are
    to_doc: Callable[[dict[str, Any]], dict[str, Any]] | None = None


# Keyed by the task's `dataset_path`, so every task on the same data (gsm8k, gsm8k_cot,
# gsm8k_cot_zeroshot, ...) works offline through one adapter.
ADAPTERS = {
    "openai/gsm8k": Adapter("gsm8k", ("question", "answer"), _gsm8k_doc),
    "gsm8k": Adapter("gsm8k", ("question", "answer"), _gsm8k_doc),
    "google-research-datasets/mbpp": Adapter("mbpp", ("task_id", "text", "test_list"), _mbpp_doc),
    "mbpp": Adapter("mbpp", ("task_id", "text", "test_list"), _mbpp_doc),
    "google/IFEval": Adapter(
        "ifeval", ("key", "prompt", "instruction_id_list", "kwargs"), _ifeval_doc
    ),
    "openai/openai_humaneval": Adapter(None, ("task_id", "prompt", "test", "entry_point")),
    "EleutherAI/hendrycks_math": Adapter(None, ("problem", "solution")),
}

# Where a task's data is: the test split a task names, in the columns of the hub dataset it
# names. Offline, `hendrycks_math` (a group of one task per subject, each reading its own
# `dataset_name`) reads one file and gives each subject its documents by this field.
GROUP_FIELDS = {  # (the fields that may hold it: MATH's `type`, MATH-500's `subject`; its key)
    "EleutherAI/hendrycks_math": (
        ("type", "subject"),
        lambda v: str(v).lower().replace(" & ", "_and_").replace(" ", "_"),
    ),
}


@dataclass(frozen=True)
class Bundled:
    file: str  # in rlctl/data/samples
    whole: bool  # the task's whole split (used when nothing else is given), or a sample


# (dataset, split) -> rlctl's bundled, licensed copy (rlctl/data/samples/README.md).
BUNDLED = {
    ("openai/gsm8k", "test"): Bundled("gsm8k-test.jsonl", whole=False),
    ("openai/gsm8k", "train"): Bundled("gsm8k-train.jsonl.gz", whole=True),
    ("google-research-datasets/mbpp", "test"): Bundled("mbpp-test.jsonl", whole=False),
    ("openai/openai_humaneval", "test"): Bundled("humaneval-test.jsonl.gz", whole=True),
    ("google/IFEval", "train"): Bundled("ifeval-sample.jsonl", whole=False),
    ("EleutherAI/hendrycks_math", "test"): Bundled("math-test-sample.jsonl", whole=False),
}

SAMPLE = "sample"  # `--data sample`: the bundled sample of the task's test split, on purpose


# Extra columns carried through lm-eval's `doc` so a sample keeps the id and reference of the
# record it came from; lm-eval ignores columns its templates do not name.
ID_COLUMN, REFERENCE_COLUMN = "_rlctl_id", "_rlctl_reference"


@dataclass(frozen=True)
class TaskInfo:
    name: str
    yaml_path: Path | None
    config: dict[str, Any]  # the task's YAML with includes merged, functions unresolved
    is_group: bool
    members: tuple[TaskInfo, ...] = ()  # a group's tasks

    @property
    def data_config(self) -> dict[str, Any]:
        """The config that says where the data is: the task's own; for a group whose tasks all
        read one dataset (hendrycks_math), its first task's."""
        if not self.is_group:
            return self.config
        datasets = {m.config.get("dataset_path") for m in self.members}
        return self.members[0].config if len(datasets) == 1 and not self.members[0].is_group else {}

    @property
    def dataset(self) -> str:
        return str(self.data_config.get("dataset_path") or "")

    @property
    def test_split(self) -> str:
        return str(self.data_config.get("test_split") or "test")

    @property
    def adapter(self) -> Adapter | None:
        return ADAPTERS.get(self.dataset)

    @property
    def fixed_fewshot(self) -> bool:
        """The task brings its own few-shot examples (gsm8k_cot's eight), not a split."""
        return bool((self.data_config.get("fewshot_config") or {}).get("samples"))

    @property
    def default_shots(self) -> int:
        return int(self.data_config.get("num_fewshot") or 0)

    @property
    def unsafe_code(self) -> bool:
        return bool(self.config.get("unsafe_code")) or any(m.unsafe_code for m in self.members)


def find_task(manager: Any, name: str) -> TaskInfo:
    """The task's entry in lm-eval's index, or one line with the nearest names."""
    from lm_eval.tasks._index import Kind
    from lm_eval.tasks._yaml_loader import load_yaml

    entry = manager.task_index.get(name)
    if entry is None:
        near = difflib.get_close_matches(name, manager.all_tasks, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(near)}?" if near else "; 'rlctl eval tasks' lists them"
        raise BadInput(f"eval: lm-eval has no task '{name}'{hint}")
    config = load_yaml(entry.yaml_path, resolve_func=False) if entry.yaml_path else {}
    is_group = entry.kind in (Kind.GROUP, Kind.TAG)
    members: tuple[TaskInfo, ...] = ()
    if entry.kind == Kind.GROUP:
        listed = config.get("task") or []
        listed = listed if isinstance(listed, list) else [listed]
        members = tuple(
            find_task(manager, t) for t in listed if isinstance(t, str) and t in manager.task_index
        )
    return TaskInfo(name, entry.yaml_path, config, is_group, members)


FEWSHOT_FROM_TEST = "test"  # `--fewshot-data test`: the old default, now a visible choice


@dataclass(frozen=True)
class EvalData:
    """What a score was computed on, said in the scores and the table."""

    origin: str  # hub | file | store
    where: str  # the hub dataset, the file path, or the run id
    docs: int | None = None
    sha256: str | None = None
    fewshot: str | None = None  # where few-shot examples came from, when not the hub
    missing: tuple[str, ...] = ()  # a group's tasks the data has no documents for

    def describe(self) -> str:
        if self.origin == "hub":
            return f"hub:{self.where}"
        text = f"{self.origin}:{self.where} ({self.docs} docs, sha256 {(self.sha256 or '')[:12]})"
        if self.missing:
            text += f"; no documents for {', '.join(self.missing)}"
        return text + (f"; few-shot: {self.fewshot}" if self.fewshot else "")


def hub_data(task: TaskInfo) -> EvalData:
    cfg = task.data_config
    name = None if task.is_group else cfg.get("dataset_name")
    split = cfg.get("test_split") or cfg.get("validation_split") or ""
    where = task.dataset + (f"[{name}]" if name else "") + (f"/{split}" if split else "")
    return EvalData("hub", where or task.name)


def to_docs(task: TaskInfo, records: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Records in the task's own columns pass through; prompt records go through the adapter."""
    adapter = task.adapter
    for rec in records:
        if adapter is None or all(c in rec for c in adapter.columns):
            yield rec
            continue
        if "chosen" in rec and "rejected" in rec:
            raise BadInput(
                f"record {rec.get('id', '?')}: a pair record, not a prompt record; eval "
                f"--data takes {task.name}'s own file"
                + (f" or 'rlctl data pull {adapter.source}'" if adapter.source else "")
            )
        need = ", ".join(adapter.columns)
        if adapter.to_doc is None or ("messages" not in rec and "prompt" not in rec):
            pulled = f" nor a prompt record of 'rlctl data pull {adapter.source}'"
            raise BadInput(
                f"record {rec.get('id', '?')}: not in {task.name}'s columns ({need})"
                + (pulled if adapter.source else "; pass the dataset's own file")
            )
        doc = adapter.to_doc(rec)
        doc[ID_COLUMN] = str(rec.get("id"))
        if rec.get("reference") is not None:
            doc[REFERENCE_COLUMN] = rec["reference"]
        yield doc


def write_docs(docs: Iterable[dict[str, Any]], path: Path) -> tuple[int, str]:
    """(count, sha256) of the JSONL written: the fingerprint that says which data was scored."""
    h = hashlib.sha256()
    n = 0
    with path.open("wb") as f:
        for doc in docs:
            line = orjson.dumps(doc) + b"\n"
            f.write(line)
            h.update(line)
            n += 1
    if n == 0:
        raise BadInput(f"eval: no documents in the data for {path.stem}")
    return n, h.hexdigest()


def write_task_yaml(task: TaskInfo, test: Path, fewshot: Path | None, out_dir: Path) -> Path:
    """The offline task file. Without separate few-shot data, examples are drawn from the test
    file itself, and lm-eval then leaves each document out of its own examples; a task with its
    own fixed examples keeps them."""

    if task.is_group:
        raise BadInput(
            f"eval: '{task.name}' is a group of tasks on different data; local data fits one "
            f"task (e.g. one of its subtasks), or run it from the hub"
        )
    if task.yaml_path is None:
        raise BadInput(f"eval: '{task.name}' is defined in Python; it cannot read local data")
    files = {"test": str(test.absolute())}
    if fewshot is not None:
        files["train"] = str(fewshot.absolute())
    spec: dict[str, Any] = {
        "include": str(task.yaml_path),
        "task": task.name,
        "tag": [],
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": files},
        "test_split": "test",
        "validation_split": None,
        "training_split": "train" if fewshot else None,
        "fewshot_split": None if task.fixed_fewshot else ("train" if fewshot else "test"),
    }
    return _write_yaml(spec, out_dir, task.name)


def _write_yaml(spec: dict[str, Any], out_dir: Path, name: str) -> Path:
    import yaml

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.yaml"
    path.write_text(
        "# Generated by rlctl eval: lm-eval's own task, reading local data.\n"
        f"# Re-run: lm_eval --include_path {out_dir} --tasks {name} ...\n"
        + yaml.safe_dump(spec, sort_keys=False)
    )
    return path


def write_group_yaml(
    group: TaskInfo, test: Path, fewshot: Path | None, out_dir: Path, shots: int = 0
) -> tuple[Path, tuple[str, ...]]:
    """A group on one dataset (hendrycks_math): each task gets the documents of its subject
    (GROUP_FIELDS), and the group keeps lm-eval's aggregation over the tasks that have any.
    Returns the group file and the tasks left without documents."""
    field, key = GROUP_FIELDS.get(group.dataset, (None, None))
    if field is None or key is None:
        write_task_yaml(group, test, fewshot, out_dir)  # raises: not splittable
    by_name = {m.config.get("dataset_name"): m for m in group.members}

    sizes: dict[str, dict[str, int]] = {"test": {}, "fewshot": {}}

    def split(path: Path, kind: str) -> dict[str, Path]:
        parts: dict[str, list[bytes]] = {}
        with path.open("rb") as f:
            for n, line in enumerate(f, 1):
                doc = orjson.loads(line)
                raw = next((doc[f] for f in field if doc.get(f) is not None), None)
                value = key(raw)
                if value not in by_name:
                    raise BadInput(
                        f"{path}:{n}: {'/'.join(field)} {raw!r} is none of {group.name}'s "
                        f"subjects ({', '.join(sorted(by_name))})"
                    )
                parts.setdefault(value, []).append(line)
        out = {}
        for value, lines in parts.items():
            out[value] = out_dir / f"{kind}-{by_name[value].name}.jsonl"
            out[value].write_bytes(b"".join(lines))
            sizes[kind][value] = len(lines)
        return out

    n_shots = shots
    tests = split(test, "test")
    shots_files = split(fewshot, "fewshot") if fewshot is not None else {}
    kept, missing = [], []
    for value, member in by_name.items():
        if value not in tests:
            missing.append(member.name)
            continue
        if fewshot is not None and value not in shots_files:
            raise BadInput(
                f"eval {group.name}: the few-shot data has no {value!r} documents for "
                f"{member.name}; give a few-shot file with every subject"
            )
        pool = sizes["fewshot"][value] if fewshot is not None else None
        check_pool(member.name, n_shots, sizes["test"][value], pool)
        write_task_yaml(member, tests[value], shots_files.get(value), out_dir)
        kept.append(member.name)
    spec = {
        "group": group.name,
        "task": kept,
        "aggregate_metric_list": group.config.get("aggregate_metric_list"),
        "metadata": group.config.get("metadata"),
    }
    return _write_yaml(spec, out_dir, group.name), tuple(missing)


def check_pool(name: str, shots: int, test_docs: int, fewshot_docs: int | None) -> None:
    """A few-shot pool too small for the shots asked is one line here, not lm-eval's
    `Sample larger than population` mid-run. Drawn from the test documents, each document is
    left out of its own examples, so the pool is one smaller."""
    if not shots:
        return
    pool = test_docs - 1 if fewshot_docs is None else fewshot_docs
    if pool < shots:
        where = "test documents (less the one scored)" if fewshot_docs is None else "few-shot data"
        raise BadInput(
            f"eval {name}: {shots} shots need at least {shots} examples, and its {where} "
            f"hold {pool}; give more few-shot data (--fewshot-data) or fewer --shots"
        )


def bundled(task: TaskInfo, split: str | None = None) -> tuple[Path, Bundled] | None:
    """rlctl's bundled copy of the task's split (its test split by default), if it has one."""
    found = BUNDLED.get((task.dataset, split or task.test_split))
    return (Path(str(files("rlctl.data") / "samples" / found.file)), found) if found else None


@dataclass(frozen=True)
class StoredPull:
    path: str
    run_id: str
    partial: str | None  # why it is not the whole split (`--sample`, `--limit N`), or None


def stored_pull(store: Any, task: TaskInfo, split: str | None = None) -> StoredPull | None:
    """The newest stored `data pull` of the task's split (its test split by default), or None.
    `partial` says when it is a sample or a cut: such data is never used unless named."""
    from rlctl.store.refs import latest_pull

    if task.adapter is None or task.adapter.source is None:
        return None
    found = latest_pull(store, task.adapter.source, split or task.test_split)
    if found is None or found.run_id is None:
        return None
    conf = (store.read_run(found.run_id) or {}).get("config") or {}
    partial = None
    if conf.get("sample"):
        partial = "rlctl's bundled sample (--sample)"
    if conf.get("limit") is not None:
        partial = f"{partial + ', ' if partial else ''}cut at --limit {conf['limit']}"
    return StoredPull(found.path, found.run_id, partial)


def fewshot_split(task: TaskInfo) -> str | None:
    """Where lm-eval's own config draws few-shot examples from (gsm8k: train)."""
    cfg = task.data_config
    return cfg.get("fewshot_split") or cfg.get("training_split") or cfg.get("validation_split")


def no_data_message(task: TaskInfo) -> str:
    split = task.test_split
    sample = bundled(task)
    also = (
        f", or --data {SAMPLE} to score rlctl's bundled sample ({sample[1].file}) on purpose"
        if sample
        else ""
    )
    if task.adapter is None or task.adapter.source is None:
        return (
            f"eval {task.name}: the hub is unreachable and rlctl has no stored data for it; "
            f"pass --data FILE with the task's own columns{also}"
        )
    src = task.adapter.source
    return (
        f"eval {task.name}: the hub is unreachable and the store has no '{split}' pull of "
        f"{src}; run 'rlctl data pull {src} --split {split} --from FILE', or pass --data FILE"
        + also
    )


def offline_task(
    task: TaskInfo,
    source: str,
    conf: dict[str, Any],
    out: Path,
    open_records: Callable[[str], tuple[Iterable[dict[str, Any]], str]],
) -> tuple[Path, EvalData]:
    """Write the documents (test, and few-shot when given) and the task YAML into `out`.
    `open_records(ref)` gives the records of a reference and their origin ("store:RUN" or
    "file:PATH"); the caller owns lineage."""
    out.mkdir(parents=True, exist_ok=True)

    columns: list[str] = []

    def load(ref: str, name: str) -> tuple[Path, int, str, str]:
        records, origin = open_records(ref)
        path = out / f"{name}.jsonl"
        docs = to_docs(task, records)
        if columns:  # the datasets library builds every split with the test split's columns
            docs = ({c: d.get(c) for c in columns} for d in docs)
        n, digest = write_docs(docs, path)
        if not columns:
            with path.open("rb") as f:
                columns.extend(orjson.loads(f.readline()))
        return path, n, digest, origin

    test, n, digest, origin = load(source, "test")
    fewshot, fewshot_from, pool = None, None, None
    if task.fixed_fewshot:
        fewshot_from = "the task's own examples"
    elif conf["fewshot_data"] == FEWSHOT_FROM_TEST:
        fewshot_from = "TEST documents, each left out of its own examples (not the task's split)"
    elif conf["fewshot_data"]:
        fewshot, pool, _, fewshot_from = load(conf["fewshot_data"], "fewshot")
    kind, where = origin.split(":", 1)
    missing: tuple[str, ...] = ()
    shots = (
        0
        if task.fixed_fewshot
        else conf["shots"]
        if conf["shots"] is not None
        else task.default_shots
    )
    if task.is_group:
        path, missing = write_group_yaml(task, test, fewshot, out, shots)
    else:
        check_pool(task.name, shots, n, pool)
        path = write_task_yaml(task, test, fewshot, out)
    return path, EvalData(kind, where, n, digest, fewshot_from, missing)
