"""`rlctl judge`: rollouts in, rewards out (and preference pairs with --pairs)."""

from __future__ import annotations

import logging

import click

from rlctl.cli.common import (
    FiniteFloat,
    command_name,
    config_options,
    emit,
    get_store,
    input_option,
    open_inputs,
    output_option,
    progress,
    resolve_config,
)
from rlctl.store import Run

log = logging.getLogger("rlctl")

EPILOG = """\b
Examples:
  rlctl rollout --limit 50 -n 4 | rlctl judge --judge math
  rlctl judge -i latest:rollout --judge math=1.0 --judge format=0.1
  rlctl judge -i rollouts.jsonl --judge math --mode strict -o judged.parquet
  rlctl judge -i mbpp-rollouts.jsonl --judge code --workers 8 --timeout 5
  rlctl judge -i rollouts.jsonl --judge llm --base-url http://127.0.0.1:8000/v1 --model judge
  rlctl judge -i rollouts.jsonl --judge math --pairs | rlctl train dpo -i -

\b
Judges: math (answer vs reference; --mode auto|strict|answer-tag|boxed|flexible), format
(regex on the output's shape), code (run the code against the reference tests in a sandbox),
llm (an OpenAI-compatible judge; key from $OPENAI_API_KEY, never stored), rm (a reward model),
or any importable TRL reward function as module:function. See docs/judges.md.
"""


@click.command(epilog=EPILOG)
@input_option
@click.option(
    "--judge", "judge", multiple=True, metavar="NAME[=WEIGHT]", help="Judge (repeatable) [math]."
)
@click.option(
    "--mode",
    type=click.Choice(["auto", "strict", "answer-tag", "boxed", "flexible"]),
    help="math: where the answer is [auto].",
)
@click.option("--format-regex", help="format: the regex a good output matches [R1 think/answer].")
@click.option(
    "--format-search",
    is_flag=True,
    default=None,
    help="format: match anywhere, not the whole text.",
)
@click.option(
    "--workers", type=click.IntRange(min=1), help="code: sandboxes in parallel [CPU count]."
)
@click.option(
    "--timeout",
    type=FiniteFloat(min=0, min_open=True),
    help="code: wall-clock seconds per program [5].",
)
@click.option("--memory-mb", type=int, help="code: address-space limit per program [1024].")
@click.option("--base-url", help="llm: OpenAI-compatible endpoint [$OPENAI_BASE_URL].")
@click.option("--model", help="llm: judge model name.")
@click.option(
    "--llm-mode",
    type=click.Choice(["pointwise", "pairwise"]),
    help="llm: 1-10 score, or A vs B [pointwise].",
)
@click.option("--concurrency", type=click.IntRange(min=1), help="llm: requests in flight [8].")
@click.option("--rm-model", metavar="PATH", help="rm: sequence-classification reward model.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Records per judge batch [64].")
@click.option(
    "--pairs", is_flag=True, default=None, help="Emit best-vs-worst pair records per prompt."
)
@output_option
@config_options
@click.pass_context
def judge(ctx: click.Context, inputs: tuple[str, ...], output: str | None, **_: object) -> None:
    """Score rollout records; judged records are stored, and streamed when piped."""
    from rlctl.backends.judges import build_all
    from rlctl.stages.judge import DEFAULTS, PairCollector, judge_records

    conf = resolve_config(ctx, DEFAULTS)
    store = get_store(ctx)
    judges = build_all(conf["judge"], {**conf, "cache_dir": store.root / "cache" / "llm"})
    with Run(store, command_name(ctx), config=conf) as run:
        try:
            reader = open_inputs(store, run, inputs, "rollout")
            judged = judge_records(progress(reader, "judging"), judges, int(conf["batch_size"]))
            if not conf["pairs"]:
                n = emit(run, judged, "judged", name="judged", output=output)
                run.metric("records", n)
                return
            collector = PairCollector()
            n = emit(run, collector.tee(judged), "judged", name="judged", stdout=False)
            n_pairs = emit(run, collector.pairs(), "pair", name="pairs", output=output)
            log.info(
                "%d pairs from %d judged records (%d prompts tied)", n_pairs, n, collector.ties
            )
            run.metric("records", n)
            run.metric("pairs", n_pairs)
            run.metric("tied_prompts", collector.ties)
        finally:
            judges.close()
