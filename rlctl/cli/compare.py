"""`rlctl compare-logprobs`: the generator/trainer log-probability mismatch, measured."""

from __future__ import annotations

import sys
from typing import Any

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
from rlctl.stages.compare_logprobs import OPTIONS
from rlctl.store import Run

EPILOG = """\b
Examples:
  rlctl rollout -i p.jsonl --model M --backend vllm --dtype bfloat16 --logprobs \\
    | rlctl compare-logprobs --model M --dtype float32
  rlctl compare-logprobs -i latest:rollout --model M --dtype bfloat16 --vs fp32_lm_head=true
  rlctl compare-logprobs -i rollouts.jsonl --model M --plot mismatch.png

\b
Δ = trainer − generator logprob per sampled token. Reported: mean/max/std |Δ|, RMS, KL
estimates (k1, k3), mean |p_t − p_g| (verl: < 0.005 normal, > 0.01 a problem), token and
sequence importance ratios, the fraction outside [0.9, 1.1] and outside --cap, the effective
sample size, and |Δ| by position.
"""


@click.command("compare-logprobs", epilog=EPILOG)
@input_option
@stage_options(OPTIONS)
@output_option
@config_options
@click.pass_context
def compare_logprobs(
    ctx: click.Context, inputs: tuple[str, ...], output: str | None, **_: object
) -> None:
    """Recompute the sampled tokens' logprobs with the trainer-side model and report the gap."""
    from rlctl.stages.compare_logprobs import DEFAULTS, check_conf, compare_run

    conf = resolve_config(ctx, DEFAULTS, OPTIONS)
    settings = check_conf(conf)
    store = get_store(ctx)
    from rlctl.stages import dry_run as dry

    def check(run: Run) -> list[tuple[str, str]]:
        trainer = ", ".join(s.describe() for s in settings)
        records = dry.records(store, run, inputs, "rollout")
        return [dry.model(conf["model"]), records, ("trainer settings", trainer)]

    if dry_run(ctx, store, conf, DEFAULTS, check):
        return
    with Run(store, command_name(ctx), config=conf) as run:
        summaries, records = compare_run(run, store, conf, inputs, settings, output)
    _print_table(settings, summaries, records)


def _print_table(
    settings: list[Any], summaries: dict[str, dict[str, float]], records: list[dict]
) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    gen = {(r.get("backend"), (r.get("sampling") or {}).get("temperature")) for r in records}
    generators = ", ".join(f"{b} T={t}" for b, t in gen)  # from the records: not markup
    table = Table(title=Text(f"generator vs trainer logprobs (generator: {generators})"))
    table.add_column("metric")
    for s in settings:
        table.add_column(f"trainer {s.describe()}", justify="right")
    for key in summaries[settings[0].name]:
        table.add_row(key, *(f"{summaries[s.name].get(key, float('nan')):.6g}" for s in settings))
    Console(file=sys.stderr).print(table)
