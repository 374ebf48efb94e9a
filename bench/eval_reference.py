"""Per-sample agreement of rlctl's eval scoring with the reference implementations it replaces.

1. Code tasks: lm-eval's mbpp and humaneval score through Hugging Face's `code_eval` metric;
   rlctl routes that metric to its sandbox (rlctl/stages/eval_code.py). Here both run on the
   same (program, tests) pairs: HumanEval's 164 prompts with their canonical solutions and with
   a wrong body, MBPP's test-split reference solutions and a wrong program. Hugging Face's
   metric is tests/fixtures/hf_code_eval (unchanged upstream code), run unsandboxed.
2. IFEval: `rlctl judge --judge ifeval` against lm-eval's own `ifeval` `process_results` on the
   bundled prompts, each answered with four scripted replies.

Run: `.venv/bin/python bench/eval_reference.py` (MBPP from ../shared/data when present).
"""

from __future__ import annotations

import gzip
import json
import os
import time

from report import ROOT, machine, publish

from rlctl.data import SAMPLES

WRONG_BODY = "    return None\n"
REPLIES = [
    "this reply is all lowercase and has no commas at all",
    '"A QUOTED REPLY, IN CAPITALS. P.S. SNEAKER SNEAKER"',
    "Sure, here it is:\n*first highlight* and *second highlight*\nthe end",
    "<<a title>>\n\nthe first answer\n******\nthe second answer",
]


def code_pairs() -> dict[str, tuple[list[str], list[str]]]:
    humaneval = [
        json.loads(x)
        for x in gzip.decompress((SAMPLES / "humaneval-test.jsonl.gz").read_bytes()).splitlines()
    ]
    he_refs = [f"{d['test']}\ncheck({d['entry_point']})" for d in humaneval]
    shared = ROOT.parent / "shared" / "data" / "mbpp" / "mbpp.jsonl"
    source = shared if shared.exists() else SAMPLES / "mbpp-test.jsonl"
    mbpp = [json.loads(x) for x in source.read_text().splitlines() if x.strip()]
    mbpp = [d for d in mbpp if 11 <= d["task_id"] <= 510]
    mb_refs = ["\n".join(d["test_list"]) for d in mbpp]
    return {
        "humaneval canonical": (
            [d["prompt"] + d["canonical_solution"] for d in humaneval],
            he_refs,
        ),
        "humaneval wrong body": ([d["prompt"] + WRONG_BODY for d in humaneval], he_refs),
        f"mbpp reference ({len(mbpp)})": ([d["code"] for d in mbpp], mb_refs),
        "mbpp wrong program": (["def nothing():\n    pass\n"] * len(mbpp), mb_refs),
    }


def hf_code_eval(programs: list[str], refs: list[str]) -> list[bool]:
    import evaluate

    os.environ["HF_ALLOW_CODE_EVAL"] = "1"
    metric = evaluate.load(str(ROOT / "tests" / "fixtures" / "hf_code_eval" / "code_eval.py"))
    _, results = metric.compute(references=refs, predictions=[[p] for p in programs], k=[1])
    return [results[i][0][1]["passed"] for i in range(len(programs))]


def ifeval_rows() -> tuple[int, int, int, list[int]]:
    """(samples, equal strict, equal loose, prompts whose arguments upstream draws at random)
    of the judge against lm-eval's process_results; random-argument prompts are left out."""
    from rlctl.backends.judges.ifeval import IFEvalJudge, reference_of, use_bundled_punkt

    use_bundled_punkt()  # before lm-eval's IFEval module looks for the Punkt files
    from lm_eval.tasks.ifeval.utils import process_results

    drawn: list[int] = []
    docs = [json.loads(x) for x in (SAMPLES / "ifeval-sample.jsonl").read_text().splitlines()]
    judges = {m: IFEvalJudge(m) for m in ("strict", "loose")}
    n = same_strict = same_loose = 0
    for doc in docs:
        for reply in REPLIES:
            ref = process_results(doc, [reply])
            rec = {"id": doc["key"], "completion": reply, "reference": reference_of(doc)}
            if "random_args" in judges["strict"].score([rec])[0][1]:
                drawn += [] if doc["key"] in drawn else [doc["key"]]
                continue
            for mode, judge in judges.items():
                reward, verdict = judge.score([rec])[0]
                ok = reward == float(ref[f"prompt_level_{mode}_acc"]) and verdict[mode] == [
                    bool(x) for x in ref[f"inst_level_{mode}_acc"]
                ]
                if mode == "strict":
                    same_strict += ok
                else:
                    same_loose += ok
            n += 1
    return n, same_strict, same_loose, drawn


def main() -> None:
    from rlctl.stages.eval_code import run_candidates

    rows = []
    for name, (programs, refs) in code_pairs().items():
        t = time.monotonic()
        ours = [r[0]["passed"] for r in run_candidates([[p] for p in programs], refs)]
        our_s = time.monotonic() - t
        t = time.monotonic()
        theirs = hf_code_eval(programs, refs)
        their_s = time.monotonic() - t
        same = sum(a == b for a, b in zip(ours, theirs, strict=True))
        differ = [i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b]
        rows.append(
            f"| {name} | {len(programs)} | {sum(ours)} | {sum(theirs)} | {same}/{len(programs)} "
            f"| {our_s:.1f} / {their_s:.1f} | {', '.join(map(str, differ[:8])) or '-'} |"
        )
    n, strict, loose, drawn = ifeval_rows()
    lines = [
        "# Eval scoring against the reference implementations",
        "",
        f"`python bench/eval_reference.py` on {machine()}.",
        "",
        "Code tasks: rlctl's sandboxed `code_eval` (what `rlctl eval mbpp|humaneval` scores with)"
        " vs Hugging Face's `code_eval` (what lm-eval loads from the hub; unsandboxed), per "
        "program, same program and tests, 3 s timeout each.",
        "",
        "| programs | n | passed (rlctl) | passed (HF) | per-sample equal | wall s rlctl / HF "
        "| differing indices |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        f"IFEval: `--judge ifeval` vs lm-eval's `ifeval` `process_results`, {n} completions "
        f"(bundled prompts x 4 scripted replies): strict equal {strict}/{n}, loose equal "
        f"{loose}/{n} (prompt level and every instruction). Left out: prompt(s) "
        f"{', '.join(map(str, drawn)) or 'none'}, whose instruction argument upstream draws at "
        "random on every call (1122 asks for '#', which the letter checker does not take, so "
        "it checks a random letter): lm-eval's own score for it changes from call to call; "
        "rlctl's judge checks it under a fixed seed and flags it (`random_args`).",
    ]
    publish("eval_reference", lines)


if __name__ == "__main__":
    main()
