"""Errors that the CLI turns into one line on stderr and an exit code.

Library code raises these instead of printing, so the same failure reads the same whether it
comes from `rlctl` on a terminal or from a notebook calling the stage directly.
"""

from __future__ import annotations

PIPE_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for `yes | head`


class RlctlError(Exception):
    """A failure with a message fit for the user; `exit_code` follows DESIGN.md section 7."""

    exit_code = 1


class BadInput(RlctlError):
    """Usage error or malformed input: the user can fix it, so exit 2."""

    exit_code = 2


class AlreadyReported(RlctlError):
    """A failure another process has already explained (rank 0 of a distributed job): exit
    with its code and say nothing more."""

    def __init__(self, exit_code: int) -> None:
        super().__init__("")
        self.exit_code = exit_code


class UpstreamFailed(RlctlError):
    """The stage feeding our stdin died, so what we read is incomplete."""

    exit_code = 1


class RunInterrupted(BaseException):
    """SIGTERM (or a closed output pipe) stops a run; BaseException so `except Exception` in
    stage code cannot swallow it and mark the run ok."""

    def __init__(self, reason: str, exit_code: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_code = exit_code
