"""`rlctl judge`: rollouts in, judged records out, and preference pairs from them.

Records stream through in batches (a judge's unit of parallel work), so memory stays flat on
any input; pairs keep only the best and worst sample per prompt.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from rlctl.backends.judges import WeightedJudge
from rlctl.backends.judges.options import JUDGE_DEFAULTS, flat_options, judge_section
from rlctl.errors import BadInput
from rlctl.options import ENDPOINT, Option, defaults
from rlctl.store import Run, Store

log = logging.getLogger(__name__)

EXTRA = {"model": ("llm", "model")}  # `rlctl judge --model` is the llm judge's model

# The config has the shape of a grpo recipe's: `reward` lists the judges (`--judge`) and the
# `judge` section holds each one's options (`judge.llm.model`, `judge.code.timeout`), so the
# same block configures judging in `rlctl judge -c` and `train grpo -c`. The flat flags are
# those options' (type, default, help: backends/judges/options.py) and fill the same section.
OPTIONS: dict[str, Option] = {
    "reward": Option(
        ["math"],
        "Judge (repeatable); SOURCE: only for records with that source",
        list,
        flags=("--judge",),
        metavar="[SOURCE:]NAME[=WEIGHT]",
    ),
    **flat_options(EXTRA),
    "endpoint": ENDPOINT["endpoint"],
    "batch_size": Option(64, "Records per judge batch", int, min=1),
    "pairs": Option(False, "Emit best-vs-worst pair records per prompt", bool),
    "judge": Option(JUDGE_DEFAULTS, "each judge's own options (judge.llm.model, ...)", dict),
}
DEFAULTS = defaults(OPTIONS)
MOVED = {"judge": "the list of judges is `reward` (as in a grpo recipe), or --judge NAME"}


def judge_records(
    records: Iterable[dict[str, Any]], judge: WeightedJudge, batch_size: int = 64
) -> Iterator[dict[str, Any]]:
    batches = _grouped(records, batch_size) if judge.needs_groups else _batches(records, batch_size)
    for batch in batches:
        for rec, (reward, verdict) in zip(batch, judge.score(batch), strict=True):
            yield {**rec, "reward": reward, "judge": judge.name, "verdict": verdict}


def _batches(records: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    it = iter(records)
    while batch := list(itertools.islice(it, size)):
        yield batch


def _grouped(records: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Batches of about `size` that never split a prompt's samples (a judge comparing samples
    needs them together). Samples of one prompt must be adjacent, as `rollout -n` writes them:
    a prompt id that comes back later would be judged as two groups, so it is refused."""
    batch: list[dict[str, Any]] = []
    done: set[Any] = set()
    for rec in records:
        key = rec.get("id")
        if batch and key != batch[-1].get("id"):
            done.add(batch[-1].get("id"))
            if len(batch) >= size:
                yield batch
                batch = []
        if key in done:
            raise BadInput(
                f"id {key!r} comes back after other prompts: sample-vs-sample judging needs "
                "each prompt's samples together (as `rollout -n` writes them; sort by id)"
            )
        batch.append(rec)
    if batch:
        yield batch


class PairCollector:
    """Best vs worst sample of each prompt (grouped by the prompt's `id`): the synthetic
    preference path, rollout -> judge -> pairs -> `train dpo`. Prompts whose samples all tie
    (or have no reward) give no pair: they carry no preference signal."""

    def __init__(self) -> None:
        self._best: dict[Any, dict[str, Any]] = {}
        self._worst: dict[Any, dict[str, Any]] = {}
        self._n: dict[Any, int] = {}
        self._prompt: dict[Any, int] = {}
        self.ties = 0

    def add(self, rec: dict[str, Any]) -> None:
        reward = rec.get("reward")
        if reward is None:
            return
        key = rec["id"]
        if isinstance(reward, bool) or not isinstance(reward, (int, float)):
            raise BadInput(f"id {key!r}: reward {reward!r} is not a number; pairs need rewards")
        if not math.isfinite(reward):
            # NaN compares false both ways: the same sample would be chosen and rejected
            raise BadInput(
                f"id {key!r} sample {rec.get('sample')}: reward is {reward}, not a finite "
                "number; fix or drop the record before --pairs"
            )
        prompt = hash(orjson.dumps(rec.get("messages") or rec.get("prompt")))
        if self._prompt.setdefault(key, prompt) != prompt:
            raise BadInput(
                f"id {key!r} names two different prompts; --pairs groups samples by id, so "
                "give each prompt its own id (e.g. `data pull` ids, or prefix them by source)"
            )
        self._n[key] = self._n.get(key, 0) + 1
        if key not in self._best or rec["reward"] > self._best[key]["reward"]:
            self._best[key] = rec
        if key not in self._worst or rec["reward"] < self._worst[key]["reward"]:
            self._worst[key] = rec

    def tee(self, records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for rec in records:
            self.add(rec)
            yield rec

    def pairs(self) -> Iterator[dict[str, Any]]:
        for key, best in self._best.items():
            worst = self._worst[key]
            if best["reward"] <= worst["reward"]:
                self.ties += 1
                continue
            pair = {
                "id": key,
                **{k: best[k] for k in ("messages", "prompt", "source") if k in best},
                "chosen": best["completion"],
                "rejected": worst["completion"],
                "margin": best["reward"] - worst["reward"],
                "meta": {
                    "judge": best.get("judge"),
                    "samples": self._n[key],
                    "chosen": {"sample": best.get("sample"), "reward": best["reward"]},
                    "rejected": {"sample": worst.get("sample"), "reward": worst["reward"]},
                    "model": best.get("model"),
                },
            }
            yield pair


def report_routes(judges: WeightedJudge) -> None:
    """Records no routed judge was for are null rewards: say how many, and stop when that
    was every record (a route that matches nothing is a typo, not a result)."""
    if judges.unrouted:
        missed = ", ".join(f"{src} ({n})" for src, n in sorted(judges.unrouted.items()))
        if not judges.scored:
            raise BadInput(
                f"no record matched a --judge route; their sources: {missed} (routes: "
                f"{', '.join(judges.labels)})"
            )
        log.warning("no judge for some records, left null: %s", missed)
    elif len(judges.judges) > 1 and not judges.routed and len(judges.sources) > 1:
        log.warning(
            "every record got every judge (%s) across sources %s; route them with "
            "SOURCE:NAME, e.g. --judge gsm8k:math --judge mbpp:code",
            ", ".join(judges.labels),
            ", ".join(sorted(judges.sources)),
        )


def report_verdicts(run: Any, judges: WeightedJudge) -> None:
    """Unreadable verdicts are null rewards; here they are counted where a researcher looks:
    the run's metrics and one line on stderr, a loud one when they are most of the verdicts."""
    for name, value in judges.report().items():
        run.metric(name, value)
    for j, _ in judges.judges:
        missing = j.report().get("no_reference", 0) if hasattr(j, "report") else 0
        if missing and not j.total():
            hint = (
                "compare the samples of each prompt with --llm-mode samples"
                if j.name == "llm"
                else "judge records that carry one (e.g. pulled with 'rlctl data pull')"
            )
            raise BadInput(
                f"{j.name}: no record has a reference to compare with, so every reward "
                f"would be null; {hint}"
            )
        if missing:
            log.warning("%s: %g records have no reference (null rewards)", j.name, missing)
        if not hasattr(j, "total") or not j.total() or "unreadable" not in j.report():
            continue
        bad, total = j.report()["unreadable"], j.total()
        line = f"{j.name}: {bad:g} of {total} verdicts unreadable (null rewards, not ties)"
        if bad * 2 > total:
            log.warning(
                "%s -- MOST of the judge's replies have no verdict line; check the judge "
                "model and --llm-template",
                line,
            )
        elif bad:
            log.info("%s", line)


def build_judges(store: Store, conf: dict[str, Any]) -> tuple[WeightedJudge, dict | None]:
    """The judges `conf` names, each from its own options section, and the `serve` endpoint
    an llm judge reaches: built before any run exists, so a bad judge spec records nothing."""
    from rlctl.backends.judges import build_all

    section, endpoint = judge_options(store, conf)
    return build_all(conf["reward"], section), endpoint


def judge_options(store: Store, conf: dict[str, Any]) -> tuple[dict[str, Any], dict | None]:
    """The judges' option sections, and the `serve` endpoint an llm judge reaches. The
    resolved sections (the `judge:` section, then the flat flags given) replace
    `conf["judge"]`, so the run records the options each judge used."""
    from rlctl.backends.judges import parse_spec
    from rlctl.stages.engines import resolve_endpoint

    endpoint = None
    if conf["endpoint"]:
        if not any(parse_spec(s)[0] == "llm" for s in conf["reward"]):
            raise BadInput("--endpoint is for --judge llm (the judge model's server)")
        endpoint = resolve_endpoint(store, conf)
    conf["judge"] = judge_section(conf["judge"], conf, DEFAULTS, extra=EXTRA)
    section = copy.deepcopy(conf["judge"])
    section["llm"]["cache_dir"] = section["llm"]["cache_dir"] or str(store.root / "cache" / "llm")
    return section, endpoint


def judge_dry_run(
    store: Store, run: Any, conf: dict[str, Any], inputs: tuple[str, ...] | list[str]
) -> list[tuple[str, str]]:
    """`--dry-run`: each judge built as the run builds it, except a reward model, whose files
    are checked instead of loaded; an llm judge's server asked what it serves; the rollout
    records read and checked."""
    from rlctl.backends.judges import build_all, parse_spec
    from rlctl.stages import dry_run

    section, endpoint = judge_options(store, conf)
    names = [parse_spec(s)[0] for s in conf["reward"]]
    built = [s for s, n in zip(conf["reward"], names, strict=True) if n != "rm"]
    if built or not names:
        build_all(built, section)  # what is wrong with a judge's spec or options, said now
    found = [("judges", ", ".join(conf["reward"]))]
    if "rm" in names:
        if not section["rm"]["model"]:
            raise BadInput("--judge rm needs --rm-model PATH (or judge.rm.model)")
        found.append(dry_run.model(str(section["rm"]["model"]), "--rm-model"))
    if "llm" in names:
        llm = section["llm"]
        found.append(
            dry_run.endpoint({"base_url": llm["base_url"], "model": llm["model"]}, endpoint)
        )
    found.append(dry_run.records(store, run, inputs, "rollout"))
    return found


def judge_run(
    run: Run,
    store: Store,
    conf: dict[str, Any],
    inputs: tuple[str, ...] | list[str],
    judges: WeightedJudge,
    endpoint: dict | None = None,
    output: str | None = None,
) -> int:
    """`rlctl judge` inside its run: rollouts in, judged records (and with `pairs`, preference
    pairs) stored and streamed, verdict counts in the run's metrics. Returns the records
    judged."""
    from rlctl.stages.engines import link_model
    from rlctl.stages.streams import emit, open_inputs, progress

    try:
        link_model(run, {"backend": "openai"}, endpoint)
        run.info["judges"] = judges.describe()
        reader = open_inputs(store, run, inputs, "rollout")
        judged = judge_records(progress(reader, "judging"), judges, int(conf["batch_size"]))
        if not conf["pairs"]:
            n = emit(run, judged, "judged", name="judged", output=output)
            run.metric("records", n)
        else:
            collector = PairCollector()
            n = emit(run, collector.tee(judged), "judged", name="judged", stdout=False)
            n_pairs = emit(run, collector.pairs(), "pair", name="pairs", output=output)
            log.info(
                "%d pairs from %d judged records (%d prompts tied)", n_pairs, n, collector.ties
            )
            run.metric("records", n)
            run.metric("pairs", n_pairs)
            run.metric("tied_prompts", collector.ties)
        report_verdicts(run, judges)
        report_routes(judges)
    finally:
        judges.close()
    return n
