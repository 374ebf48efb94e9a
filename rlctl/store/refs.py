"""Turn `-i` values into files, and check that a pipe's producer finished cleanly.

`-i` takes a file, a glob, `-`, or a store reference (DESIGN.md section 2): a run id (or unique
prefix/suffix), `RUN:artifact`, or `latest:NAME` where NAME is a command (`data-pull`) or a
record kind (`prompts`). References resolve from run.json files, never the index, so a stage
never waits on a reader's lock.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlctl.errors import BadInput, UpstreamFailed
from rlctl.records.io import STDIN, expand_sources
from rlctl.records.schema import kind as kind_by_name
from rlctl.store.layout import Store
from rlctl.store.liveness import death_reason

log = logging.getLogger("rlctl")


@dataclass(frozen=True)
class Input:
    path: str  # a file path, or "-" for stdin
    run_id: str | None  # the run that wrote it, when it is a store artifact


def _slug(command: str) -> str:
    return command.replace(" ", "-")


def _complete(run: dict[str, Any], kind: str | None, name: str | None) -> list[dict[str, Any]]:
    arts = [a for a in run.get("artifacts") or [] if a.get("complete")]
    if name is not None:
        arts = [a for a in arts if a["name"] == name]
    elif kind is not None:
        arts = [a for a in arts if a["kind"] == kind]
    return arts


def resolve_inputs(store: Store, refs: list[str], kind: str | None = None) -> list[Input]:
    """`kind` (the record kind a stage reads) picks artifacts when a run has several."""
    out: list[Input] = []
    for ref in refs:
        if ref == STDIN or Path(ref).exists() or any(c in ref for c in "*?["):
            for p in expand_sources([ref]):
                out.append(Input(p, _artifact_run(store, p)))
            continue
        out.extend(_resolve_ref(store, ref, kind))
    return out


def _artifact_run(store: Store, path: str) -> str | None:
    try:
        rel = Path(path).absolute().relative_to(store.artifacts_dir)
    except ValueError:
        return None
    return rel.parts[0] if len(rel.parts) > 1 else None


def _resolve_ref(store: Store, ref: str, kind: str | None) -> list[Input]:
    if ref.startswith("latest:"):
        want = ref.split(":", 1)[1]
        as_kind = _kind_name(want)
        for run in store.iter_runs():
            if run.get("status") != "ok":
                continue
            if _slug(run.get("command", "")) == want or run.get("command") == want:
                arts = _complete(run, kind, None)
            elif as_kind is not None:
                arts = _complete(run, as_kind, None)
            else:
                continue
            if arts:
                return [Input(str(store.root / a["path"]), run["run_id"]) for a in arts]
        raise BadInput(
            f"{ref}: no finished run in {store.root} matches {want!r} "
            "(give a command such as 'data-pull' or a kind such as 'prompts')"
        )
    run_part, _, art_name = ref.partition(":")
    if not _looks_like_run(run_part):
        raise BadInput(f"{ref}: no such file, and not a store reference (RUN, RUN:NAME, latest:X)")
    rid = store.match_run(run_part)
    run = store.read_run(rid) or {}
    arts = _complete(run, kind, art_name or None)
    if not arts:
        what = f"artifact {art_name!r}" if art_name else f"complete {kind or 'record'} artifact"
        raise BadInput(f"{ref}: run {rid} ({run.get('status')}) has no {what}")
    return [Input(str(store.root / a["path"]), rid) for a in arts]


def _looks_like_run(text: str) -> bool:
    return bool(text) and "/" not in text and "." not in text


def _kind_name(name: str) -> str | None:
    try:
        return kind_by_name(name).name
    except KeyError:
        return None


def check_upstream(store: Store, parent_ids: set[str], wait_s: float = 10.0) -> None:
    """Called when stdin ends. A producer that crashed or was killed also just closes the pipe,
    so EOF alone cannot tell a complete input from a cut one; the producer's run.json can."""
    for rid in sorted(parent_ids):
        deadline = time.monotonic() + wait_s
        while True:
            run = store.read_run(rid)
            if run is None:
                log.debug("upstream run %s is not in this store; cannot check it", rid)
                break
            status = run.get("status")
            if status == "ok":
                break
            if status in ("failed", "interrupted"):
                why = f": {run['error']}" if run.get("error") else ""
                raise UpstreamFailed(
                    f"the stage feeding stdin (run {rid}, {run.get('command')}) {status}{why}; "
                    "its output is incomplete, so this run stops"
                )
            reason = death_reason(run, store.run_dir(rid))
            if reason:
                raise UpstreamFailed(
                    f"the stage feeding stdin (run {rid}, {run.get('command')}) died: {reason}; "
                    "its output is incomplete, so this run stops"
                )
            if time.monotonic() > deadline:
                log.warning("upstream run %s still running after its output ended", rid)
                break
            time.sleep(0.05)


def find_endpoint(store: Store, ref: str) -> dict[str, Any]:
    """A live `serve vllm` run's endpoint: `latest`, or a run id (prefix/suffix)."""
    if ref == "latest":
        for run in store.iter_runs():
            live = run.get("status") == "running" and not death_reason(
                run, store.run_dir(run["run_id"])
            )
            if run.get("endpoint") and live:
                return run["endpoint"]
        raise BadInput(
            f"no running 'serve vllm' endpoint in {store.root}; start one or pass --base-url"
        )
    run = store.read_run(store.match_run(ref)) or {}
    if not run.get("endpoint"):
        raise BadInput(f"run {ref} registered no endpoint (is it a 'serve vllm' run?)")
    if run.get("status") != "running":
        raise BadInput(f"the endpoint of run {run['run_id']} is {run.get('status')}, not running")
    return run["endpoint"]


def latest_pull(store: Store, name: str, split: str | None) -> Input | None:
    """The prompts of the newest finished `data pull NAME` of that split: the data `eval`
    falls back to when the hub is out of reach."""
    for run in store.iter_runs():
        conf = run.get("config") or {}
        if run.get("command") != "data pull" or run.get("status") != "ok":
            continue
        if conf.get("name") != name or (split and conf.get("split") != split):
            continue
        arts = _complete(run, "prompt", None)
        if arts:
            return Input(str(store.root / arts[0]["path"]), run["run_id"])
    return None
