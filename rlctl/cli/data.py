"""`rlctl data pull` and `rlctl data validate`."""

from __future__ import annotations

import logging
import sys

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
from rlctl.records import KINDS
from rlctl.stages.mix import OPTIONS as MIX_OPTIONS
from rlctl.stages.pull import OPTIONS
from rlctl.store import Run

log = logging.getLogger("rlctl")


@click.group()
def data() -> None:
    """Datasets in, records out."""


PULL_EPILOG = """\b
Examples:
  rlctl data pull gsm8k --sample                        # 200 bundled GSM8K test rows, offline
  rlctl data pull gsm8k --from gsm8k/test.jsonl | wc -l  # the original file -> 1319 records
  rlctl data pull hh-rlhf --from helpful-base-test.jsonl.gz -o pairs.parquet
  rlctl data pull mbpp --from mbpp.jsonl --split test --limit 50
  rlctl data pull ifeval --sample                       # 32 bundled IFEval prompts
  rlctl data pull synth:arith --split test              # generated 2-digit additions
  rlctl data pull org/dataset --split train --field prompt=question --field reference=answer

\b
Known datasets: gsm8k (prompt; reference = the number after ####), hh-rlhf (pair; split at
the last Assistant turn), mbpp (prompt; reference = the test asserts), ifeval (prompt;
reference = the instructions, for --judge ifeval). Generated: synth:arith (7,600 train / 500
held-out additions, reference = the sum). Anything else is a hub id or a local file (.jsonl,
.jsonl.gz, .json, .parquet, .csv) mapped with --field.
"""


@data.command("pull", epilog=PULL_EPILOG)
@click.argument("name")
@stage_options(OPTIONS)
@output_option
@config_options
@click.pass_context
def pull_cmd(ctx: click.Context, name: str, output: str | None, **_: object) -> None:
    """Pull a dataset as prompt or pair records: stored in the run, and on stdout when piped."""
    from rlctl.stages.pull import DEFAULTS, check_conf, pull_dry_run, pull_run

    conf = resolve_config(ctx, DEFAULTS, OPTIONS)
    check_conf(conf, name)
    store = get_store(ctx)
    if dry_run(ctx, store, conf, DEFAULTS, lambda run: pull_dry_run(conf)):
        return
    with Run(store, command_name(ctx), config=conf, seed=conf["seed"]) as run:
        pull_run(run, conf, output)


MIX_EPILOG = """\b
Examples:
  rlctl data mix gsm8k=0.5 mbpp=0.3 synth:arith=0.2 --sample --total 20000 --replace
  rlctl data mix gsm8k=0.7 extra.jsonl=0.3 --total 5000 --seed 1 | rlctl rollout --model M
  rlctl data mix -c mixture.yaml | rlctl train grpo --model M --reward math
  rlctl data mix easy.jsonl=1 --total 800 --order easy.jsonl=order.txt | rlctl train sft ...
\b
A source is a file, a store reference (RUN, RUN:NAME, latest:X) or a data pull name. Counts
are exact shares of --total (largest remainder). Sampling is without replacement unless
--replace; a source smaller than its share stops the mix. Shuffled unless --order/--order-by,
whose order `train` keeps. A mixture file: sources: [gsm8k=0.5, mbpp=0.5], total, seed, ...
"""


@data.command("mix", epilog=MIX_EPILOG)
@click.argument("sources", nargs=-1)
@stage_options(MIX_OPTIONS)
@output_option
@config_options
@click.pass_context
def mix_cmd(ctx: click.Context, sources: tuple[str, ...], output: str | None, **_: object) -> None:
    """Mix prompt sources by weight into one stream (with `source` on every record), optionally
    as a curriculum; the realised counts are recorded in the run."""
    from rlctl.stages.mix import DEFAULTS, check_conf, mix_dry_run, mix_run

    conf = resolve_config(ctx, DEFAULTS, MIX_OPTIONS)
    if sources:  # the arguments win over a mixture file's sources, as flags do
        conf["sources"] = list(sources)
    parsed = check_conf(conf)
    store = get_store(ctx)
    if dry_run(ctx, store, conf, DEFAULTS, lambda run: mix_dry_run(store, run, conf, parsed)):
        return
    with Run(store, command_name(ctx), config=conf, seed=conf["seed"]) as run:
        mix_run(run, store, conf, parsed, output)


VALIDATE_EPILOG = """\b
Examples:
  rlctl data validate -i rollouts.jsonl --kind rollout
  rlctl data pull gsm8k --sample | rlctl data validate --kind prompt
"""


@data.command("validate", epilog=VALIDATE_EPILOG)
@input_option
@click.option(
    "--kind",
    type=click.Choice(sorted(KINDS)),
    required=True,
    help="Record kind to check against (docs/records.md).",
)
@click.option("--dry-run", is_flag=True, help="Check the records; record no run.")
@click.pass_context
def validate_cmd(ctx: click.Context, inputs: tuple[str, ...], kind: str, dry_run: bool) -> None:
    """Check records against their kind: exit 0 with a count, or 2 naming file:line and field.

    Reading from a pipe, it also fails when the stage that fed it died midway, so a truncated
    stream is never taken as a complete one.
    """
    from rlctl.stages.pull import validate_run
    from rlctl.store.run import DryRun

    store = get_store(ctx)
    opened = DryRun if dry_run else Run
    with opened(store, command_name(ctx), config={"kind": kind, "inputs": list(inputs)}) as run:
        n = validate_run(run, store, inputs, kind)
    sys.stderr.write(f"{n} valid {kind} records\n")
