"""`rlctl judge`: rollouts in, rewards out (and preference pairs with --pairs)."""

from __future__ import annotations

import logging

import click

from rlctl.cli.common import (
    command_name,
    config_options,
    dry_run,
    get_store,
    input_option,
    output_option,
    resolve_config,
    stage_options,
)
from rlctl.stages.judge import DEFAULTS, OPTIONS
from rlctl.store import Run

log = logging.getLogger("rlctl")

EPILOG = """\b
Examples:
  rlctl rollout --limit 50 -n 4 | rlctl judge --judge math
  rlctl judge -i latest:rollout --judge math=1.0 --judge format=0.1
  rlctl judge -i rollouts.jsonl --judge math --mode strict -o judged.parquet
  rlctl judge -i mbpp-rollouts.jsonl --judge code --workers 8 --timeout 5
  rlctl judge -i rollouts.jsonl --judge llm --base-url http://127.0.0.1:8000/v1 --model judge
  rlctl judge -i rollouts.jsonl --judge llm --set judge.llm.model=J --set judge.llm.base_url=URL
  rlctl judge -i rollouts.jsonl --judge math --pairs | rlctl train dpo -i -

\b
Judges: math (answer vs reference; --mode auto|strict|answer-tag|boxed|flexible), format
(regex on the output's shape), code (run the code against the reference tests in a sandbox),
llm (an OpenAI-compatible judge; key from $OPENAI_API_KEY, never stored), rm (a reward model),
ifeval (lm-eval's IFEval instruction checkers; --ifeval-mode strict|loose), or any importable
TRL reward function as module:function. Each judge's options are also its config section,
judge.NAME.KEY, as in a grpo recipe. See docs/judges.md.
"""


@click.command(epilog=EPILOG)
@input_option
@stage_options(OPTIONS)
@output_option
@config_options
@click.pass_context
def judge(ctx: click.Context, inputs: tuple[str, ...], output: str | None, **_: object) -> None:
    """Score rollout records; judged records are stored, and streamed when piped."""
    from rlctl.stages.judge import MOVED, build_judges, judge_dry_run, judge_run

    conf = resolve_config(ctx, DEFAULTS, OPTIONS, moved=MOVED)
    store = get_store(ctx)
    if dry_run(ctx, store, conf, DEFAULTS, lambda run: judge_dry_run(store, run, conf, inputs)):
        return
    judges, endpoint = build_judges(store, conf)
    with Run(store, command_name(ctx), config=conf) as run:
        judge_run(run, store, conf, inputs, judges, endpoint, output)
