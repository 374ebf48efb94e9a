"""TRL's own config class for a trainer, built from rlctl's `trainer:` section: every TRL
knob works without rlctl re-declaring it, checked (names, plain types) before any model loads."""

from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path
from typing import Any

from rlctl.errors import BadInput
from rlctl.train.recipe import recipe


def trl_config(kind: str, section: dict[str, Any], output_dir: Path) -> Any:
    """TRL's config dataclass, with CPU-safe defaults, from the `trainer:` section; an
    unknown key is one line with a "did you mean" (before any model is loaded)."""
    import warnings

    import torch

    warnings.filterwarnings("ignore", category=FutureWarning)  # deprecations inside TRL itself

    cls = recipe(kind).config_class()
    names = {f.name for f in dataclasses.fields(cls)}
    for key in section:
        if key not in names:
            hint = difflib.get_close_matches(key, names, n=1)
            did = f"; did you mean 'trainer.{hint[0]}'?" if hint else ""
            raise BadInput(f"trainer.{key}: not a {cls.__name__} field{did}")
    _check_field_types(cls, section)
    section = dict(section)
    token = section.pop("hub_token", None)
    if token:
        # TRL pickles its whole config into every checkpoint (training_args.bin): the token
        # goes to huggingface_hub through the environment instead, never into a file
        os.environ["HF_TOKEN"] = str(token)
    defaults: dict[str, Any] = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 2,
        "logging_steps": 1,
        "save_strategy": "steps",  # full checkpoints (optimizer, scheduler, RNG): --resume
        "save_steps": 50,
        "save_total_limit": 2,
        "report_to": [],
        "seed": 0,
        "disable_tqdm": True,  # rlctl streams metrics to the store; `runs tail -f` follows them
    }
    defaults |= recipe(kind).trl_defaults
    if not torch.cuda.is_available():
        defaults |= {"use_cpu": True, "bf16": False}  # TRL defaults to bf16, which a CPU lacks
    try:
        return cls(**(defaults | section))
    except (TypeError, ValueError) as e:
        raise BadInput(f"trainer: {str(e).splitlines()[0]}") from e


def _check_field_types(cls: type, section: dict[str, Any]) -> None:
    """TRL's config dataclasses take `learning_rate: fast` without a word and fail much later
    inside the optimizer: check plain-typed fields (numbers, booleans, strings) here."""
    import types
    import typing

    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 (an unresolvable hint in TRL: skip the check)
        return
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    for key, value in section.items():
        hint = hints.get(key)
        args = (
            typing.get_args(hint)
            if typing.get_origin(hint) in (typing.Union, types.UnionType)
            else (hint,)
        )
        simple = [a for a in args if a in names]
        if (
            value is None
            or not simple
            or len(simple) != len([a for a in args if a is not type(None)])
        ):
            continue  # None, or a type richer than plain scalars: TRL checks it
        ok = any(
            (
                isinstance(value, bool)
                if a is bool
                else isinstance(value, a) and not isinstance(value, bool)
            )
            or (a is float and isinstance(value, int) and not isinstance(value, bool))
            for a in simple
        )
        if not ok:
            want = " or ".join(names[a] for a in simple)
            raise BadInput(f"trainer.{key}: expected {want}, got {value!r:.60}")


def trl_keys(kind: str) -> list[str]:
    """The settings of TRL's config class for `kind` (imported only to name a mistyped key)."""
    return [f.name for f in dataclasses.fields(recipe(kind).config_class())]
