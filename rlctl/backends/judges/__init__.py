"""The judge registry: `--judge math=1.0 --judge format=0.1` -> one weighted judge.

The same registry serves `rlctl judge` and GRPO: `reward_function("math")` is a TRL reward
function, so a policy is trained on exactly the reward it is later judged by.
"""

from __future__ import annotations

import difflib
import importlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from math import isfinite
from typing import Any

from rlctl.backends.judges.base import Judge, Score, completion_text
from rlctl.errors import BadInput

# the judges, by name: `module:Class`, imported on first use (rule-based judging never loads
# torch); each class builds itself from its own options section (`Class.from_options`)
JUDGES = {
    "math": "rlctl.backends.judges.math:MathJudge",
    "format": "rlctl.backends.judges.format:FormatJudge",
    "code": "rlctl.backends.judges.code:CodeJudge",
    "llm": "rlctl.backends.judges.llm:LLMJudge",
    "rm": "rlctl.backends.judges.rm:RewardModelJudge",
    "ifeval": "rlctl.backends.judges.ifeval:IFEvalJudge",
}
NAMES = tuple(JUDGES)


def parse_route(spec: str) -> tuple[str | None, str]:
    """(route, the rest) of `[ROUTE:]NAME[=WEIGHT]`: `gsm8k:math` scores only records whose
    `source` is gsm8k. `pkg.module:function` stays a function; `gsm8k:pkg.module:function`
    routes one."""
    head, sep, rest = spec.partition(":")
    if not sep:
        return None, spec
    name = rest.partition("=")[0].strip()
    if name in NAMES or ":" in name:
        if not head.strip():
            raise BadInput(f"--judge {spec!r}: empty route before ':'")
        return head.strip(), rest
    return None, spec


def parse_spec(spec: str) -> tuple[str, float]:
    """`math`, `math=0.5`, or `pkg.module:function=0.2` (any importable reward function);
    a route (`gsm8k:math`) is read by `parse_route` first."""
    spec = parse_route(spec)[1]
    name, _, weight = spec.partition("=")
    name = name.strip()
    if not name:
        raise BadInput(f"--judge {spec!r}: expected NAME or NAME=WEIGHT")
    try:
        w = float(weight) if weight else 1.0
    except ValueError:
        raise BadInput(f"--judge {spec!r}: weight {weight!r} is not a number") from None
    if not isfinite(w):  # the `math` judge module shadows the stdlib name here
        raise BadInput(f"--judge {spec!r}: weight must be a finite number")
    if name not in NAMES and ":" not in name:
        hint = difflib.get_close_matches(name, NAMES, n=1)
        did = f"; did you mean {hint[0]!r}?" if hint else ""
        raise BadInput(
            f"--judge {name!r}: unknown judge{did} (judges: {', '.join(NAMES)}, or module:function)"
        )
    return name, w


def build(name: str, options: Mapping[str, Any] | None = None) -> Judge:
    """One judge from its name and the judges' sections (`options.judge_section`): each judge
    reads its own section only (`llm` its `model`), so no other setting can leak into it."""
    from rlctl.backends.judges.options import judge_section

    o = judge_section(options)
    if name in JUDGES:
        module, _, cls = JUDGES[name].partition(":")
        return getattr(importlib.import_module(module), cls).from_options(o[name])
    return FunctionJudge(name)


class FunctionJudge:
    """Any importable TRL-style reward function, `f(completions, **columns) -> list[float]`."""

    def __init__(self, target: str) -> None:
        module, _, attr = target.partition(":")
        try:
            self.fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise BadInput(f"--judge {target}: cannot import it ({e})") from e
        self.name = target

    def score(self, records: Sequence[dict[str, Any]]) -> list[Score]:
        columns = {k for r in records for k in r} - {"completion"}
        kwargs = {k: [r.get(k) for r in records] for k in columns}
        rewards = self.fn([r.get("completion") for r in records], **kwargs)
        return [(None if x is None else float(x), {"function": self.name}) for x in rewards]

    def close(self) -> None:
        pass


class WeightedJudge:
    """Several judges as one: reward = sum of weight * reward over the judges that decided
    (None only when none did); each judge's verdict is kept under its name. A routed judge
    (`gsm8k:math`) scores only the records whose `route_by` field (`source`) matches, so a
    mixed gsm8k + mbpp input gets math on one and code on the other, never both."""

    def __init__(
        self, judges: list[tuple[Judge, float, str | None]], route_by: str = "source"
    ) -> None:
        self.judges = [(j, w) for j, w, _ in judges]
        self.routes = [r for _, _, r in judges]
        self.route_by = route_by
        self.routed = any(r is not None for r in self.routes)
        self.labels = [j.name if r is None else f"{r}:{j.name}" for j, _, r in judges]
        self.needs_groups = any(getattr(j, "needs_groups", False) for j, _ in self.judges)
        self.scored: Counter[str] = Counter()
        self.unrouted: Counter[str] = Counter()
        self.sources: set[str] = set()
        single = len(judges) == 1 and judges[0][1] == 1.0 and not self.routed
        self.name = (
            self.labels[0]
            if single
            else "+".join(
                f"{label}={w:g}" for label, (_, w) in zip(self.labels, self.judges, strict=True)
            )
        )

    def score(self, records: Sequence[dict[str, Any]]) -> list[Score]:
        sources = [r.get(self.route_by) for r in records]
        self.sources.update(str(s) for s in sources if s is not None)
        if len(self.judges) == 1 and not self.routed:
            (judge, w), label = self.judges[0], self.labels[0]
            self.scored[label] += len(records)
            return [(None if r is None else w * r, v) for r, v in judge.score(records)]
        per_judge: list[tuple[str, float, dict[int, Score]]] = []
        for (judge, w), route, label in zip(self.judges, self.routes, self.labels, strict=True):
            mine = [i for i, s in enumerate(sources) if route is None or s == route]
            if mine:
                scores = judge.score([records[i] for i in mine])
                per_judge.append((label, w, dict(zip(mine, scores, strict=True))))
                self.scored[label] += len(mine)
        out: list[Score] = []
        for i in range(len(records)):
            parts = [(label, w, s[i]) for label, w, s in per_judge if i in s]
            if not parts:
                self.unrouted[str(sources[i])] += 1
                reason = f"no judge for {self.route_by} {sources[i]!r}"
                out.append((None, {"reason": reason}))
                continue
            decided = [w * r for _, w, (r, _) in parts if r is not None]
            verdict = {label: {**v, "reward": r, "weight": w} for label, w, (r, v) in parts}
            out.append((sum(decided) if decided else None, verdict))
        return out

    def describe(self) -> dict[str, Any]:
        """Per judge, what the run records about it (a judge without `describe` has none),
        and which judge scores which records."""
        out: dict[str, Any] = {
            label: j.describe()
            for (j, _), label in zip(self.judges, self.labels, strict=True)
            if hasattr(j, "describe")
        }
        if self.routed:
            out["routes"] = {
                "by": self.route_by,
                "judges": {
                    label: route for label, route in zip(self.labels, self.routes, strict=True)
                },
            }
        return out

    def report(self) -> dict[str, float]:
        """Per judge counts as `name/count` metrics (unreadable verdicts, position bias), and
        how many records each judge scored."""
        out: dict[str, float] = {}
        for (j, _), label in zip(self.judges, self.labels, strict=True):
            if hasattr(j, "report"):
                out |= {f"{label}/{k}": v for k, v in j.report().items()}
        if self.routed or len(self.judges) > 1:
            out |= {f"scored/{label}": n for label, n in self.scored.items()}
        if self.unrouted:
            out["unrouted"] = sum(self.unrouted.values())
        return out

    def close(self) -> None:
        for j, _ in self.judges:
            j.close()


def build_all(
    specs: Sequence[str], options: Mapping[str, Any] | None = None, route_by: str = "source"
) -> WeightedJudge:
    if not specs:
        raise BadInput(f"no judge: pass --judge NAME ({', '.join(NAMES)})")
    parsed = [(parse_route(s)[0], *parse_spec(s)) for s in specs]
    keys = [(route, name) for route, name, _ in parsed]
    if len(set(keys)) != len(keys):
        raise BadInput(f"--judge: {', '.join(specs)} names a judge twice for the same records")
    return WeightedJudge([(build(n, options), w, r) for r, n, w in parsed], route_by)


def reward_function(
    spec: str, options: Mapping[str, Any] | None = None, route_by: str = "source"
) -> Callable[..., list[float | None]]:
    """A TRL reward function: `f(completions, prompts=..., **dataset_columns)`; `options` are
    the judges' sections (`{"llm": {"model": ...}}`, defaults for the rest).

    TRL passes every extra dataset column (e.g. `reference`) as a keyword list aligned with
    `completions`; they become the record fields the judge reads.
    """
    from rlctl.backends.judges.options import judge_section

    judge = build_all([spec], judge_section(options), route_by)

    def reward(completions: list[Any], prompts: list[Any] | None = None, **kw: Any) -> list:
        n = len(completions)
        columns = {k: v for k, v in kw.items() if isinstance(v, list) and len(v) == n}
        records = []
        for i, c in enumerate(completions):
            rec = {k: v[i] for k, v in columns.items()}
            rec["completion"] = completion_text(c)
            if prompts is not None:
                p = prompts[i]
                rec["messages" if isinstance(p, list) else "prompt"] = p
            records.append(rec)
        return [r for r, _ in judge.score(records)]

    reward.__name__ = f"rlctl_{judge.name}".translate(str.maketrans("=+:", "___"))
    return reward


__all__ = [
    "NAMES",
    "Judge",
    "Score",
    "WeightedJudge",
    "build_all",
    "parse_route",
    "parse_spec",
    "reward_function",
]
