"""The `rlctl` command: a thin click layer over the stages (DESIGN.md section 3).

Subcommands are imported only when invoked (or listed), and their modules import nothing heavy
at module level, so `rlctl --help` stays well under the 0.3 s target with torch installed.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
from typing import Any

import click

from rlctl import __version__
from rlctl.errors import PIPE_CLOSED, AlreadyReported, RlctlError, RunInterrupted

# name -> "module:attribute", in the order `--help` lists them.
COMMANDS = {
    "data": ("rlctl.cli.data:data", "Pull datasets as prompt or pair records."),
    "rollout": ("rlctl.cli.rollout:rollout", "Sample completions: hf, vllm or any OpenAI server."),
    "judge": ("rlctl.cli.judge:judge", "Score rollouts: math, format, code, llm, rm; pairs."),
    "compare-logprobs": (
        "rlctl.cli.compare:compare_logprobs",
        "Generator vs trainer logprob mismatch.",
    ),
    "train": ("rlctl.cli.train:train", "Post-train with TRL: sft, dpo, beta-dpo, grpo."),
    "eval": ("rlctl.cli.eval:eval_", "Evaluate with lm-evaluation-harness; compare runs."),
    "serve": ("rlctl.cli.serve:serve", "Serve a model with vLLM (supervised, registered)."),
    "model": ("rlctl.cli.model:model", "Build a tiny local model for smoke tests."),
    "slurm": ("rlctl.cli.slurm:slurm", "Run stages as Slurm jobs: submit, status, cancel."),
    "sql": ("rlctl.cli.sql:sql", "Query the run history with SQL."),
    "runs": ("rlctl.cli.runs:runs", "List, show and follow runs."),
    "store": ("rlctl.cli.store:store", "Manage the artifact store (path, rebuild, gc)."),
}

_state = {"debug": False}


class LazyGroup(click.Group):
    """Resolves subcommands on first use; the short help comes from `COMMANDS` so listing
    them in `--help` imports none of them."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]] | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*self.lazy, *sorted(super().list_commands(ctx))]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, attr = self.lazy[name][0].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(n, h) for n, (_, h) in self.lazy.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


EPILOG = """\b
Examples:
  rlctl data pull gsm8k --sample --limit 5      # bundled GSM8K rows as prompt records
  rlctl data pull gsm8k --from test.jsonl | wc -l
  rlctl sql "SELECT command, status FROM runs"  # every run is recorded in the store
  rlctl runs ls --status failed

Every stage reads and writes JSONL records (docs/records.md); stdout carries records
when piped, everything else goes to stderr. Exit codes: 0 ok, 1 failure, 2 bad input.
"""


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", prog_name="rlctl")
@click.option(
    "--store",
    "store_path",
    metavar="PATH",
    envvar="RLCTL_STORE",
    help="Artifact store directory [env RLCTL_STORE; default ./.rlctl].",
)
@click.option("--debug", is_flag=True, help="Debug logging and full tracebacks.")
@click.pass_context
def main(ctx: click.Context, store_path: str | None, debug: bool) -> None:
    """rlctl: LLM post-training experiments as composable, recorded stages."""
    _state["debug"] = debug
    setup_logging(debug)
    ctx.obj = {"store": store_path}


def setup_logging(debug: bool) -> None:
    """Our logger only: libraries keep their own handlers, so nothing is printed twice."""
    logger = logging.getLogger("rlctl")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("rlctl: %(message)s"))
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG if debug else logging.INFO)


def _fail(message: str, code: int) -> int:
    if _state["debug"]:
        traceback.print_exc()
    if code == 2 and os.environ.get("RANK", "0") != "0":
        return code  # another rank of a distributed job: rank 0 says the same line once
    from rlctl.store.redact import redact_text  # stderr ends up in Slurm's log files

    sys.stderr.write(f"rlctl: error: {redact_text(message)}\n")
    return code


def _silence_stdout() -> None:
    """After a closed pipe, stop Python's exit-time flush from printing its own traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def run(argv: list[str] | None = None) -> None:
    """Console entry point: every failure is one line on stderr with the exit code of
    DESIGN.md section 7; `--debug` adds the traceback."""
    args = sys.argv[1:] if argv is None else argv
    _state["debug"] = "--debug" in args
    try:
        main.main(args=args, prog_name="rlctl", standalone_mode=False)
        code = 0
    except click.exceptions.Exit as e:
        code = e.exit_code
    except click.exceptions.Abort:
        code = _fail("aborted", 130)
    except click.UsageError as e:
        cmd = e.ctx.command_path if e.ctx else "rlctl"
        code = _fail(f"{e.format_message()} (see '{cmd} --help')", 2)
    except click.ClickException as e:
        code = _fail(e.format_message(), e.exit_code)
    except AlreadyReported as e:
        code = e.exit_code
    except RlctlError as e:
        code = _fail(str(e), e.exit_code)
    except RunInterrupted as e:
        if e.exit_code == PIPE_CLOSED:
            _silence_stdout()  # like any Unix filter whose reader went away: quiet, status 141
            code = PIPE_CLOSED
        else:
            code = _fail(f"interrupted ({e.reason})", e.exit_code)
    except BrokenPipeError:
        _silence_stdout()
        code = PIPE_CLOSED
    except KeyboardInterrupt:
        code = _fail("interrupted", 130)
    except Exception as e:  # noqa: BLE001 (the last line of defence: one line, not a traceback)
        hint = "" if _state["debug"] else " (run with --debug for the traceback)"
        code = _fail(f"{type(e).__name__}: {e}{hint}", 1)
    streams = sys.modules.get("rlctl.stages.streams")
    if streams is not None:
        streams.release_stdout()
    sys.exit(code)
