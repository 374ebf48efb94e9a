"""Signal trapping, for a run and for every rank of a distributed job: SIGTERM (Slurm's
preemption), SIGINT and SIGHUP become an exception (or a handler's call) in the main thread,
so the process can save what it has and record how it ended instead of dying mid-write."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from rlctl.errors import RunInterrupted

_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP")


def trap_signals(handler: Any = None) -> dict[int, Any]:
    """SIGTERM, SIGINT and SIGHUP raise RunInterrupted (or call `handler`), so a run, or any
    rank of a distributed one, can save what it has and say how it ended; returns the
    handlers it replaced, for `restore_signals`."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    old = {}
    for name in _SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None:
            old[sig] = signal.signal(sig, handler or _raise_interrupted)
    return old


def restore_signals(old: dict[int, Any]) -> None:
    for sig, handler in old.items():
        signal.signal(sig, handler)
    old.clear()


@contextmanager
def signals_trapped(handler: Any = None) -> Iterator[None]:
    """`trap_signals` for the length of a block, the previous handlers restored after it."""
    old = trap_signals(handler)
    try:
        yield
    finally:
        restore_signals(old)


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise RunInterrupted(signal.Signals(signum).name, 128 + signum)
