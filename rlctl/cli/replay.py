"""`rlctl runs show RUN --replay`: the command line that reproduces a run from its record.
Positional arguments come from the recorded argv (parsed by the command itself), inputs from
the recorded lineage (a stored artifact as `RUN:NAME`, a pipe's producer as its run id), and
every setting from the resolved config, as `--set` for each key that differs from the
command's defaults. Secrets were never recorded, so a redacted value must be given again."""

from __future__ import annotations

import importlib
import shlex
from typing import Any

import click
import yaml

from rlctl.errors import BadInput
from rlctl.store import Store
from rlctl.store.diff import flatten

# the stage option tables whose defaults a run's config is compared with
DEFAULTS_OF = {
    "data pull": "rlctl.stages.pull:DEFAULTS",
    "data mix": "rlctl.stages.mix:DEFAULTS",
    "rollout": "rlctl.stages.rollout:DEFAULTS",
    "judge": "rlctl.stages.judge:DEFAULTS",
    "compare-logprobs": "rlctl.stages.compare_logprobs:DEFAULTS",
    "eval": "rlctl.stages.evaluate:DEFAULTS",
    "train": "rlctl.stages.train:DEFAULTS",
}
INPUT_VIAS = {"artifact", "file", "record"}


def replay_line(store: Store, run: dict[str, Any]) -> str:
    words = str(run.get("command") or "").split()
    config = dict(run.get("config") or {})
    if words == ["judge"] and isinstance(config.get("judge"), list):
        config["reward"] = config.pop("judge")  # recorded before the `judge` options section
    if words == ["eval"]:
        words = ["eval", "suite" if "suite" in config else "run"]
    table = DEFAULTS_OF.get(" ".join(words[:2])) or DEFAULTS_OF.get(words[0] if words else "")
    if table is None:
        raise BadInput(f"run {run.get('run_id')}: '{run.get('command')}' runs cannot be replayed")
    module, _, attr = table.partition(":")
    defaults = getattr(importlib.import_module(module), attr)
    out = ["rlctl", *words, *_positionals(words, run.get("argv") or [])]
    refs = _inputs(store, run)
    if words[0] == "eval":  # eval reads its documents through --data/--fewshot-data, pinned
        stored = iter(r for flag, r in zip(refs[::2], refs[1::2], strict=True) if flag == "-i")
        for key in ("data", "fewshot_data"):
            if str(config.get(key) or "").startswith("latest:"):
                config[key] = next(stored, config[key])
        refs = []
    if words == ["data", "mix"]:  # its sources are its arguments, a `latest:` one pinned
        stored = iter(r for flag, r in zip(refs[::2], refs[1::2], strict=True) if flag == "-i")
        for spec in config.pop("sources", None) or []:
            name, _, weight = str(spec).rpartition("=")
            out.append(f"{next(stored, name) if name.startswith('latest:') else name}={weight}")
        refs = []
    out += refs
    given, base = flatten({k: v for k, v in config.items() if k in defaults}), flatten(defaults)
    for key, value in given.items():
        if key not in base or base[key] != value:
            out += ["--set", f"{key}={_yaml(value)}"]
    return " ".join(shlex.quote(w) for w in out)


def _positionals(words: list[str], argv: list[str]) -> list[str]:
    """The command's arguments (a dataset NAME, an eval TASK or suite FILE), as it parsed them."""
    from rlctl.cli import main

    command: Any = main
    for w in words:
        command = command.get_command(click.Context(command), w)
    rest = list(argv)
    for w in words:  # argv begins with the command words (eval: the task may come first)
        if rest and rest[0] == w:
            rest.pop(0)
    ctx = command.make_context(words[-1], rest, resilient_parsing=True)
    return [
        str(ctx.params[p.name])
        for p in command.params
        if isinstance(p, click.Argument)
        and p.nargs == 1  # a variadic argument (data mix's sources) is in the config
        and ctx.params.get(p.name) is not None
    ]


def _inputs(store: Store, run: dict[str, Any]) -> list[str]:
    """`-i` for each input read as records, and `--eval-input` for a held-out set: a stored
    artifact as RUN:NAME (a pipe's producer by its run id), a foreign file by its path."""
    out: list[str] = []
    seen: set[str] = set()
    for inp in run.get("inputs") or []:
        via, rid, path = inp.get("via"), inp.get("run_id"), inp.get("input")
        if via not in INPUT_VIAS | {"eval"}:
            continue  # the model, an endpoint, a resumed checkpoint: in the config
        ref = path
        if rid:
            names = [
                a["name"]
                for a in (store.read_run(rid) or {}).get("artifacts") or []
                if path and str(store.root / a["path"]) == str(path)
            ]
            ref = f"{rid}:{names[0]}" if names else rid
        if not ref or (via == "record" and rid in seen) or ref in seen:
            continue
        seen.update({ref, rid or ""})
        out += ["--eval-input", ref] if via == "eval" else ["-i", ref]
    return out


def _yaml(value: Any) -> str:
    """The value as `--set` reads it back (YAML): `[sigmoid, sft]`, `'[0-9]'`, `1.0e-05`."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip()
    return text.removesuffix("\n...").strip()
