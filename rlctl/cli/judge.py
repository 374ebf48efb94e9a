"""`rlctl judge`: rollouts in, rewards out (and preference pairs with --pairs)."""

from __future__ import annotations

import logging

import click

from rlctl.cli.common import (
    FiniteFloat,
    command_name,
    config_options,
    endpoint_options,
    get_store,
    input_option,
    output_option,
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
ifeval (lm-eval's IFEval instruction checkers; --ifeval-mode strict|loose), or any importable
TRL reward function as module:function. See docs/judges.md.
"""


@click.command(epilog=EPILOG)
@input_option
@click.option(
    "--judge",
    "judge",
    multiple=True,
    metavar="[SOURCE:]NAME[=WEIGHT]",
    help="Judge (repeatable) [math]; SOURCE: only for records with that source.",
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
@click.option("--model", help="llm: judge model name.")
@click.option(
    "--llm-mode",
    type=click.Choice(["pointwise", "pairwise", "samples"]),
    help="llm: 1-10 score; vs the reference; or the samples of a prompt vs each other [pointwise].",
)
@click.option(
    "--llm-template",
    metavar="NAME|FILE",
    help="llm: the judge's prompt: default, hh-helpful, hh-harmless, tldr, or a Jinja file.",
)
@click.option(
    "--llm-constrain",
    is_flag=True,
    default=None,
    help="llm: a vLLM judge may only answer with a verdict line (structured outputs).",
)
@click.option("--llm-max-tokens", type=click.IntRange(min=1), help="llm: reply length limit [512].")
@endpoint_options
@click.option("--concurrency", type=click.IntRange(min=1), help="llm: requests in flight [8].")
@click.option("--rm-model", metavar="PATH", help="rm: sequence-classification reward model.")
@click.option(
    "--ifeval-mode",
    type=click.Choice(["strict", "loose"]),
    help="ifeval: the reward is lm-eval's prompt-level strict or loose accuracy [strict].",
)
@click.option("--batch-size", type=click.IntRange(min=1), help="Records per judge batch [64].")
@click.option(
    "--pairs", is_flag=True, default=None, help="Emit best-vs-worst pair records per prompt."
)
@output_option
@config_options
@click.pass_context
def judge(ctx: click.Context, inputs: tuple[str, ...], output: str | None, **_: object) -> None:
    """Score rollout records; judged records are stored, and streamed when piped."""
    from rlctl.stages.judge import DEFAULTS, build_judges, judge_run

    conf = resolve_config(ctx, DEFAULTS)
    store = get_store(ctx)
    judges, endpoint = build_judges(store, conf)
    with Run(store, command_name(ctx), config=conf) as run:
        judge_run(run, store, conf, inputs, judges, endpoint, output)
