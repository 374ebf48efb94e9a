"""Code tasks (mbpp, humaneval) scored by lm-eval's own task code, executed in rlctl's sandbox.

lm-eval scores them through Hugging Face `evaluate`'s `code_eval` metric, which it loads from the
hub when its task module is imported (even for `--predict-only`) and which runs model-written
code in a plain subprocess. rlctl installs, for the eval's process only, a `code_eval` module in
a private `evaluate` module cache and turns `evaluate`'s hub lookup off, so `evaluate.load(
"code_eval")` finds it: same inputs and outputs as Hugging Face's metric (pass@k with the
unbiased estimator of Chen et al., 2021; per-candidate results), but each program runs in the
sandbox of `rlctl judge --judge code` (its own namespaces, uid, cgroup and limits; tests
evaluated outside the program). Nothing else of the task changes: prompt, filters, the
`pass_at_1`/`pass_at_k` wrappers and the aggregation stay lm-eval's.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger("rlctl")

# What `evaluate.load("code_eval")` imports: a thin module whose class is rlctl's metric.
SHIM = '''"""code_eval, as rlctl runs it: Hugging Face's interface, rlctl's sandbox."""
from rlctl.stages.eval_code import metric_class

CodeEval = metric_class()
'''

DEFAULT_TIMEOUT = 3.0  # Hugging Face code_eval's default per-program timeout (seconds)

_boxes: dict[float, Any] = {}


def _sandbox(timeout: float) -> Any:
    """One sandbox per timeout for the process: lm-eval calls the metric once per document."""
    if timeout not in _boxes:
        from rlctl.backends.judges.sandbox import Sandbox

        _boxes[timeout] = Sandbox(timeout=timeout)
        atexit.register(_boxes[timeout].close)
    return _boxes[timeout]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with n samples, c of them correct (Chen et al., 2021)."""
    if n - c < k:
        return 1.0
    prob_all_fail = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_fail *= 1.0 - k / i
    return 1.0 - prob_all_fail


def run_candidates(
    predictions: list[list[str]], references: list[str], timeout: float = DEFAULT_TIMEOUT
) -> list[list[dict[str, Any]]]:
    """Per problem, per candidate: {passed, result} as Hugging Face's code_eval reports it."""
    from rlctl.backends.judges.sandbox import split_tests

    jobs, slots = [], []
    out: list[list[dict[str, Any]]] = []
    for task_id, (candidates, reference) in enumerate(zip(predictions, references, strict=True)):
        row: list[dict[str, Any]] = []
        try:
            tests = split_tests(reference)
        except SyntaxError as e:
            tests = None
            reason = f"failed: the reference tests do not parse: {e.msg}"
        for cid, candidate in enumerate(candidates):
            row.append({"task_id": task_id, "completion_id": cid, "passed": False})
            if tests is None:
                row[-1]["result"] = reason
                continue
            jobs.append((candidate, tests))
            slots.append(row[-1])
        out.append(row)
    for slot, res in zip(slots, _sandbox(timeout).run_many(jobs), strict=True):
        slot["passed"] = res.passed
        slot["result"] = "passed" if res.passed else f"failed: {res.reason}"
    return out


def compute(
    predictions: list[list[str]],
    references: list[str],
    k: list[int] | tuple[int, ...] = (1, 10, 100),
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[dict[str, float], dict[int, list[tuple[int, dict[str, Any]]]]]:
    """(pass@k for each k every problem has enough candidates for, per-problem results)."""
    results = run_candidates(predictions, references, timeout)
    totals = [len(row) for row in results]
    correct = [sum(r["passed"] for r in row) for row in results]
    scores = {
        f"pass@{kk}": sum(pass_at_k(n, c, kk) for n, c in zip(totals, correct, strict=True))
        / len(totals)
        for kk in k
        if totals and all(n >= kk for n in totals)
    }
    return scores, {i: [(r["completion_id"], r) for r in row] for i, row in enumerate(results)}


def metric_class() -> type:
    import datasets
    import evaluate

    class CodeEval(evaluate.Metric):
        def _info(self) -> Any:
            return evaluate.MetricInfo(
                module_type="metric",
                description="code_eval (pass@k), programs run in rlctl's sandbox",
                citation="",
                inputs_description="predictions: candidates per problem; references: tests",
                features=datasets.Features(
                    {
                        "predictions": datasets.Sequence(datasets.Value("string")),
                        "references": datasets.Value("string"),
                    }
                ),
                homepage="",
                codebase_urls=[],
                reference_urls=[],
            )

        def _compute(
            self,
            predictions: list[list[str]],
            references: list[str],
            k: list[int] = [1, 10, 100],  # noqa: B006 (Hugging Face's signature)
            num_workers: int = 4,
            timeout: float = DEFAULT_TIMEOUT,
        ) -> Any:
            return compute(predictions, references, k, timeout)

    return CodeEval


def route_code_eval_to_sandbox() -> Path:
    """Make `evaluate.load("code_eval")` in this process return the sandboxed metric: a private
    module cache holding only it, and `evaluate`'s hub lookup off (so neither Hugging Face's
    unsandboxed metric nor a cached copy of it can be picked)."""
    import evaluate.config as ec

    root = Path(tempfile.mkdtemp(prefix="rlctl-evaluate-modules-"))
    digest = hashlib.sha256(SHIM.encode()).hexdigest()
    where = root / "evaluate_modules" / "metrics" / "evaluate-metric--code_eval" / digest
    where.mkdir(parents=True)
    for d in (root / "evaluate_modules", where.parent.parent, where.parent, where):
        (d / "__init__.py").touch()
    (where / "code_eval.py").write_text(SHIM)
    ec.HF_MODULES_CACHE = root
    ec.HF_EVALUATE_OFFLINE = True
    if not log.isEnabledFor(logging.DEBUG):  # "using the cached version": that is the point
        import evaluate

        evaluate.logging.set_verbosity_error()
    log.info("eval: code tasks run their programs in rlctl's sandbox (module cache %s)", root)
    return root
