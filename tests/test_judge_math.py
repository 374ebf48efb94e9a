"""`math` against lm-eval's own gsm8k filters, run from the installed package.

Every case agrees with lm-eval except those in DIFFERENCES, each of which is deliberate and
documented in docs/judges.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rlctl.backends.judges.math import MathJudge

CORPUS: list[tuple[str, str]] = [
    ("#### 18", "18"),
    ("The answer is 18.\n#### 18", "18"),
    ("#### 1,000", "1000"),
    ("#### 1000", "1,000"),
    ("#### $18", "18"),
    ("####18", "18"),
    ("#### -5", "-5"),
    ("#### 72.0", "72"),
    ("#### 0.50", "0.5"),
    ("#### 18.", "18"),
    ("#### 3.5", "3.5"),
    ("The total is $1,234.50 in all", "1234.50"),
    ("She has 5 apples and 3 pears, so 8 fruits.", "8"),
    ("no number here", "5"),
    ("", "5"),
    ("#### five", "5"),
    ("\\boxed{18}", "18"),
    ("<answer>18</answer>", "18"),
    ("The answer is -3", "-3"),
    ("It drops by 3 - 5 = -2", "-2"),
    ("#### 5\n#### 6", "5"),
    ("#### 10 dollars", "10"),
    ("18 eggs. Then 20 more.", "20"),
    ("2.5%", "2.5"),
    ("#### -0", "0"),
    ("x = 4,", "4"),
    ("Answer: 1,2,3", "123"),
    ("$", "5"),
    ("The answer is 42\n\nQuestion: What is 2+2?\nAnswer: 4", "42"),
    ("#### 7.00", "7"),
    ("#### 1 000", "1000"),
    ("#### \u22125", "-5"),
    ("I think 18.0 is right", "18"),
    ("Total: 12.5.", "12.5"),
    ("#### 3/4", "0.75"),
    ("costs $5.", "5"),
    ("####  18", "18"),
    ("#### .5", "0.5"),
    ("The answer is 1e3", "1000"),
    ("Step 1: 4 * 2 = 8\nStep 2: 8 + 2 = 10\n#### 10", "10"),
    ("#### 10\nThe answer is 12", "10"),
    ("\\boxed{\\frac{1}{2}}", "0.5"),
    ("Answer: -$5", "-5"),
    ("...", "5"),
    ("1.", "1"),
    ("#### 2,125", "2,125"),
]

# (completion, mode) -> why rlctl says 1.0 where lm-eval says 0.0
DIFFERENCES: dict[tuple[str, str], str] = {
    ("#### $18", "strict"): "a $ after #### is allowed",
    ("####18", "strict"): "no space needed after ####",
    ("####  18", "strict"): "any whitespace after ####",
    ("#### 72.0", "strict"): "numbers compare as numbers",
    ("#### 72.0", "flexible"): "numbers compare as numbers",
    ("#### 0.50", "strict"): "numbers compare as numbers",
    ("#### 0.50", "flexible"): "numbers compare as numbers",
    ("#### 7.00", "strict"): "numbers compare as numbers",
    ("#### 7.00", "flexible"): "numbers compare as numbers",
    ("#### -0", "strict"): "numbers compare as numbers",
    ("#### -0", "flexible"): "numbers compare as numbers",
    ("#### .5", "strict"): "numbers compare as numbers",
    ("#### .5", "flexible"): "numbers compare as numbers",
    ("I think 18.0 is right", "flexible"): "numbers compare as numbers",
    ("#### \u22125", "strict"): "a Unicode minus is a minus",
    ("#### \u22125", "flexible"): "a Unicode minus is a minus",
}


def _lm_eval_scores() -> dict[str, dict[tuple[str, str], float]]:
    """strict-match and flexible-extract exactly as lm-eval computes them for gsm8k."""
    import lm_eval
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters.extraction import RegexFilter
    from lm_eval.filters.selection import TakeFirstFilter

    cfg = yaml.safe_load((Path(lm_eval.__file__).parent / "tasks/gsm8k/gsm8k.yaml").read_text())
    metric = {
        k: v
        for k, v in cfg["metric_list"][0].items()
        if k not in ("metric", "aggregation", "higher_is_better")
    }
    out: dict[str, dict[tuple[str, str], float]] = {}
    for flt in cfg["filter_list"]:
        (regex_cfg, take) = flt["filter"]
        assert take["function"] == "take_first"
        regex = RegexFilter(**{k: v for k, v in regex_cfg.items() if k != "function"})
        scores = {}
        for completion, reference in CORPUS:
            (pred,) = TakeFirstFilter().apply(regex.apply([[completion]], [{}]), [{}])
            scores[(completion, reference)] = float(
                exact_match_hf_evaluate([pred], [reference], **metric)["exact_match"]
            )
        out[flt["name"]] = scores
    return out


def test_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 40


@pytest.mark.parametrize(
    ("ours", "theirs"), [("strict", "strict-match"), ("flexible", "flexible-extract")]
)
def test_agrees_with_lm_eval_except_where_documented(ours: str, theirs: str) -> None:
    lm = _lm_eval_scores()[theirs]
    judge = MathJudge(mode=ours)
    for completion, reference in CORPUS:
        mine, verdict = judge.score_one(completion, reference)
        if (completion, ours) in DIFFERENCES:
            assert (mine, lm[(completion, reference)]) == (1.0, 0.0), (completion, verdict)
        else:
            assert mine == lm[(completion, reference)], (completion, reference, verdict)


def test_every_documented_difference_is_in_the_docs() -> None:
    docs = (Path(__file__).resolve().parents[1] / "docs" / "judges.md").read_text()
    for (completion, mode), why in DIFFERENCES.items():
        assert f"`{completion!r}`" in docs and why in docs, (completion, mode)


@pytest.mark.parametrize(
    ("completion", "reference", "mode", "reward", "used"),
    [
        ("<think>hmm</think><answer>18</answer>", "18", "auto", 1.0, "answer-tag"),
        ("<answer>\\boxed{18}</answer>", "18", "answer-tag", 1.0, "answer-tag"),
        ("so \\boxed{\\frac{1}{2}}", "0.5", "boxed", 1.0, "boxed"),
        ("so \\boxed{\\frac{1}{2}}", "\\frac{2}{4}", "auto", 1.0, "boxed"),
        ("\\boxed{x^2+2x+1}", "(x+1)^2", "boxed", 1.0, "boxed"),
        ("\\boxed{18 \\text{ dollars}}", "18", "boxed", 1.0, "boxed"),
        ("It is 18. #### 18", "18", "auto", 1.0, "strict"),
        ("no answer at all", "18", "answer-tag", 0.0, "answer-tag"),
        ("a \\boxed{17}", "18", "boxed", 0.0, "boxed"),
    ],
)
def test_other_modes(completion: str, reference: str, mode: str, reward: float, used: str) -> None:
    got, verdict = MathJudge(mode=mode).score_one(completion, reference)
    assert (got, verdict["mode"]) == (reward, used), verdict


def test_no_reference_is_none_not_zero() -> None:
    assert MathJudge().score_one("#### 1", None)[0] is None


def test_backward_scan_equals_lm_eval_regex_last_match() -> None:
    """last_flexible is a faster route to findall(...)[-1]; random strings over the
    characters that matter must agree exactly."""
    import random

    from rlctl.backends.judges.math import LM_EVAL_FLEXIBLE, last_flexible

    def reference(text: str) -> str | None:
        found = LM_EVAL_FLEXIBLE.findall(text)
        if not found:
            return None
        groups = [g for g in found[-1] if g]
        return groups[0].strip() if groups else None

    rng = random.Random(0)
    alphabet = "0123456789$.,- ax\n"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(20000)]
    texts += [c for c, _ in CORPUS] + [
        "answer is 5" + " words" * 500,
        "-",
        "--5",
        "5-",
        "$,",
        "1.-2",
    ]
    for text in texts:
        assert last_flexible(text) == reference(text), repr(text)
