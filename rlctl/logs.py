"""Quiet-logging helpers every layer may use: libraries that print progress bars and INFO
lines on stderr are turned down, since rlctl says what matters itself (`--debug` shows all)."""

from __future__ import annotations


def quiet_transformers() -> None:
    """No download/loading progress bars on stderr: rlctl draws its own."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
