"""`rlctl compare-logprobs`: the generator/trainer log-probability mismatch, measured."""

from __future__ import annotations

import sys
from typing import Any

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
    precision_options,
    resolve_config,
)
from rlctl.store import Run

DEFAULTS: dict[str, Any] = {
    "model": None,
    "dtype": "float32",
    "fp32_lm_head": False,
    "temperature": None,
    "vs": None,
    "cap": 2.0,
    "plot": None,
    "batch_size": 8,
}

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
@click.option("--model", help="Trainer-side model (local path or hub id).")
@precision_options("Trainer", "float32")
@click.option(
    "--temperature",
    type=FiniteFloat(min=0, min_open=True),
    help="Override the records' sampling temperature.",
)
@click.option("--vs", metavar="K=V[,K=V]", help="A second trainer setting, e.g. fp32_lm_head=true.")
@click.option("--cap", type=float, help="Importance-ratio cap to count violations of [2.0].")
@click.option("--plot", metavar="PNG", help="Histogram of Δ and Δ by position.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Sequences per forward pass [8].")
@output_option
@config_options
@click.pass_context
def compare_logprobs(
    ctx: click.Context, inputs: tuple[str, ...], output: str | None, **_: object
) -> None:
    """Recompute the sampled tokens' logprobs with the trainer-side model and report the gap."""
    from rlctl.errors import BadInput
    from rlctl.stages.compare_logprobs import (
        Mismatch,
        Recomputer,
        Setting,
        checked,
        parse_vs,
        temperature_of,
    )

    conf = resolve_config(ctx, DEFAULTS)
    if not conf["model"]:
        raise BadInput("compare-logprobs needs --model (the trainer-side model)")
    base = Setting("base", conf["dtype"], bool(conf["fp32_lm_head"]))
    settings = [base] + ([parse_vs(base, conf["vs"])] if conf["vs"] else [])
    store = get_store(ctx)
    with Run(store, command_name(ctx), config=conf) as run:
        run.add_model(conf["model"])
        reader = open_inputs(store, run, inputs, "rollout")
        records = list(checked(reader.located()))
        temps = [temperature_of(r, conf["temperature"]) for r in records]
        stats = {s.name: Mismatch(cap=float(conf["cap"])) for s in settings}
        rows: list[dict[str, Any]] = []
        for s in settings:
            recomputed = Recomputer(conf["model"], s, int(conf["batch_size"])).logprobs(
                records, temps
            )
            for rec, trainer in zip(records, recomputed, strict=True):
                deltas = stats[s.name].add(rec["completion_logprobs"], trainer)
                for pos, (tok, g, t, d) in enumerate(
                    zip(
                        rec["completion_token_ids"],
                        rec["completion_logprobs"],
                        trainer,
                        deltas,
                        strict=True,
                    )
                ):
                    rows.append(
                        {
                            "id": rec["id"],
                            "sample": rec.get("sample", 0),
                            "setting": s.describe(),
                            "position": pos,
                            "token_id": tok,
                            "generator_logprob": g,
                            "trainer_logprob": t,
                            "delta": d,
                        }
                    )
        summaries = {s.name: stats[s.name].summary() for s in settings}
        for s in settings:
            for key, value in summaries[s.name].items():
                run.metric(f"{s.name}/{key}", value)
        run.info["config"]["summary"] = {s.describe(): summaries[s.name] for s in settings}
        emit(run, iter(rows), "logprob_diff", name="logprob_diffs", output=output)
        _print_table(settings, summaries, records)
        if conf["plot"]:
            first = settings[-1]
            stats[first.name].plot(conf["plot"], f"{conf['model']} ({first.describe()})")
            run.register_path("plot", "plot", conf["plot"], fmt="png")


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
