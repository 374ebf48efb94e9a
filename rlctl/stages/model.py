"""`rlctl model tiny`: a random-weight model built as a run, so the store knows it (a model
artifact with its shape and parameter count) and every later run that loads it links to it."""

from __future__ import annotations

from typing import Any

from rlctl.store import Run


def tiny_run(run: Run, out: str, seed: int, chat_template: bool, shape: dict[str, Any]) -> dict:
    """Build the tiny model at `out` inside `run`; returns its summary (shape, parameters)."""
    from rlctl.models import build_tiny

    summary = build_tiny(out, seed=seed, chat_template=chat_template, **shape)
    run.register_path("model", "model", out)
    run.info["config"]["model"] = summary
    run.metric("parameters", summary["parameters"])
    return summary
