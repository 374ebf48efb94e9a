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


def _mbpp_doc(rec: dict[str, Any]) -> dict[str, Any]:
    meta = rec.get("meta") or {}
    if "text" not in meta:
        raise BadInput(
            f"record {rec.get('id')}: an MBPP prompt record without meta.text "
            "(pulled by an older rlctl); pull it again with 'rlctl data pull mbpp'"
        )
    return {
        "task_id": meta.get("task_id"),
        "text": meta["text"],
        "code": meta.get("solution") or "",
        "test_list": meta.get("tests") or [],
        "test_setup_code": meta.get("test_setup_code") or "",
        "challenge_test_list": meta.get("challenge_tests") or [],
    }


@dataclass(frozen=True)
class Adapter:
    source: str  # the `rlctl data pull` name whose prompt records convert
    columns: tuple[str, ...]  # the task's own columns: records with them are used as they are
    to_doc: Callable[[dict[str, Any]], dict[str, Any]]


# Keyed by the task's `dataset_path`, so every task on the same data (gsm8k, gsm8k_cot,
# gsm8k_cot_zeroshot, ...) works offline through one adapter.
ADAPTERS = {
    "openai/gsm8k": Adapter("gsm8k", ("question", "answer"), _gsm8k_doc),
    "gsm8k": Adapter("gsm8k", ("question", "answer"), _gsm8k_doc),
    "google-research-datasets/mbpp": Adapter("mbpp", ("task_id", "text", "test_list"), _mbpp_doc),
    "mbpp": Adapter("mbpp", ("task_id", "text", "test_list"), _mbpp_doc),
}

# Extra columns carried through lm-eval's `doc` so a sample keeps the id and reference of the
# record it came from; lm-eval ignores columns its templates do not name.
ID_COLUMN, REFERENCE_COLUMN = "_rlctl_id", "_rlctl_reference"


@dataclass(frozen=True)
class TaskInfo:
    name: str
    yaml_path: Path | None
    config: dict[str, Any]  # the task's YAML with includes merged, functions unresolved
    is_group: bool

    @property
    def dataset(self) -> str:
        return str(self.config.get("dataset_path") or "")

    @property
    def adapter(self) -> Adapter | None:
        return ADAPTERS.get(self.dataset)

    @property
    def fixed_fewshot(self) -> bool:
        """The task brings its own few-shot examples (gsm8k_cot's eight), not a split."""
        return bool((self.config.get("fewshot_config") or {}).get("samples"))

    @property
    def unsafe_code(self) -> bool:
        return bool(self.config.get("unsafe_code"))


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
    return TaskInfo(name, entry.yaml_path, config, entry.kind in (Kind.GROUP, Kind.TAG))


FEWSHOT_FROM_TEST = "test"  # `--fewshot-data test`: the old default, now a visible choice


@dataclass(frozen=True)
class EvalData:
    """What a score was computed on, said in the scores and the table."""

    origin: str  # hub | file | store
    where: str  # the hub dataset, the file path, or the run id
    docs: int | None = None
    sha256: str | None = None
    fewshot: str | None = None  # where few-shot examples came from, when not the hub

    def describe(self) -> str:
        if self.origin == "hub":
            return f"hub:{self.where}"
        text = f"{self.origin}:{self.where} ({self.docs} docs, sha256 {(self.sha256 or '')[:12]})"
        return text + (f"; few-shot: {self.fewshot}" if self.fewshot else "")


def hub_data(task: TaskInfo) -> EvalData:
    name = task.config.get("dataset_name")
    split = task.config.get("test_split") or task.config.get("validation_split") or ""
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
                f"--data takes {task.name}'s own file or 'rlctl data pull {adapter.source}'"
            )
        if "messages" not in rec and "prompt" not in rec:
            need = ", ".join(adapter.columns)
            raise BadInput(
                f"record {rec.get('id', '?')}: neither {task.name}'s columns ({need}) "
                f"nor a prompt record of 'rlctl data pull {adapter.source}'"
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
    import yaml

    if task.is_group:
        raise BadInput(
            f"eval: '{task.name}' is a group of tasks; local data fits one task "
            f"(e.g. one of its subtasks), or run it from the hub"
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
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{task.name}.yaml"
    path.write_text(
        "# Generated by rlctl eval: lm-eval's own task, reading local data.\n"
        f"# Re-run: lm_eval --include_path {out_dir} --tasks {task.name} ...\n"
        + yaml.safe_dump(spec, sort_keys=False)
    )
    return path


@dataclass(frozen=True)
class StoredPull:
    path: str
    run_id: str
    partial: str | None  # why it is not the whole split (`--sample`, `--limit N`), or None


def stored_pull(store: Any, task: TaskInfo, split: str | None = None) -> StoredPull | None:
    """The newest stored `data pull` of the task's split (its test split by default), or None.
    `partial` says when it is a sample or a cut: such data is never used unless named."""
    from rlctl.store.refs import latest_pull

    if task.adapter is None:
        return None
    found = latest_pull(store, task.adapter.source, split or task.config.get("test_split"))
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
    cfg = task.config
    return cfg.get("fewshot_split") or cfg.get("training_split") or cfg.get("validation_split")


def no_data_message(task: TaskInfo) -> str:
    if task.adapter is None:
        return (
            f"eval {task.name}: the hub is unreachable and rlctl has no stored data for it; "
            "pass --data FILE with the task's own columns"
        )
    src, split = task.adapter.source, task.config.get("test_split") or "test"
    return (
        f"eval {task.name}: the hub is unreachable and the store has no '{split}' pull of "
        f"{src}; run 'rlctl data pull {src} --split {split}' (or --sample), or pass --data FILE"
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
    fewshot, fewshot_from = None, None
    if task.fixed_fewshot:
        fewshot_from = "the task's own examples"
    elif conf["fewshot_data"] == FEWSHOT_FROM_TEST:
        fewshot_from = "TEST documents, each left out of its own examples (not the task's split)"
    elif conf["fewshot_data"]:
        fewshot, *_, fewshot_from = load(conf["fewshot_data"], "fewshot")
    kind, where = origin.split(":", 1)
    return write_task_yaml(task, test, fewshot, out), EvalData(kind, where, n, digest, fewshot_from)
