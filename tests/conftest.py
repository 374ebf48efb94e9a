"""Shared fixtures: a fresh store per test and the real `rlctl` command.

A pipeline (`shell=`) always runs real processes. A single command runs the same entry point
(`rlctl.cli.run`) in the test process, with its own argv, environment, working directory and
stdio: torch, transformers, TRL and lm-eval are imported once per pytest worker instead of
once per command (about 8 s of CPU each on the 2-core CI machine), and the ~500 light commands
(`sql`, `data`, `runs`, `judge`) skip a ~0.5 s interpreter start each (docs/testing.md).
RLCTL_TEST_SUBPROCESS=1 runs every command as a process.
"""

from __future__ import annotations

import io
import logging
import os
import shlex
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(os.environ.get("RLCTL_SHARED_DATA", ROOT.parent / "shared" / "data"))
_SCRIPT = Path(sys.executable).with_name("rlctl")
RLCTL = str(_SCRIPT) if _SCRIPT.exists() else f"{sys.executable} -m rlctl"

Runner = Callable[..., subprocess.CompletedProcess]

# xdist workers share the machine's cores: each gets its share for torch's OpenMP threads (set
# before any test imports torch, and inherited by the commands it starts), instead of every
# worker spinning as many threads as there are cores against the others.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1 and "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // _WORKERS))

# The longest files start first, so `--dist loadfile` does not leave one worker running the
# learning tests alone at the end (docs/testing.md has the figures).
LONGEST_FIRST = ("test_learning.py", "test_vllm.py", "test_train.py", "test_train_distributed.py")


def pytest_configure(config: pytest.Config) -> None:
    # xdist >= 3.6 reorders `--dist loadfile` by the number of tests in a file, which sent
    # test_learning.py (6 tests, the longest file) last; keep the order below instead
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


# Commands that stay processes: `serve` leaves a supervisor running behind it.
OWN_PROCESS = frozenset({"serve"})
IN_PROCESS = os.environ.get("RLCTL_TEST_SUBPROCESS") != "1"


class _Captured(io.BytesIO):
    """What a command wrote; its text wrapper closing (when dropped) does not lose it."""

    def close(self) -> None:
        pass


def run_in_process(
    args: list[str], input: bytes | None, env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess:
    """`rlctl ARGS` through the console entry point, as its process would see it: argv, a
    replaced environment and cwd, stdin from `input`, stdout and stderr captured as bytes;
    all restored afterwards, with the `rlctl` logger and the warnings filters the command
    set up. Python warnings are collected by pytest, as any test's are."""
    from rlctl.cli import run

    saved = (dict(os.environ), Path.cwd(), sys.argv, sys.stdin, sys.stdout, sys.stderr)
    logger = logging.getLogger("rlctl")
    saved_logger = (logger.handlers, logger.level, logger.propagate)
    out, err = _Captured(), _Captured()
    code: int
    try:
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
        sys.argv = ["rlctl", *args]
        sys.stdin = io.TextIOWrapper(io.BytesIO(input or b""), encoding="utf-8")
        sys.stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
        sys.stderr = io.TextIOWrapper(err, encoding="utf-8", write_through=True)
        with warnings.catch_warnings():
            try:
                run(list(args))
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else int(e.code is not None)
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        env_before, cwd_before, sys.argv, sys.stdin, sys.stdout, sys.stderr = saved
        logger.handlers, logger.level, logger.propagate = saved_logger
        os.chdir(cwd_before)
        os.environ.clear()
        os.environ.update(env_before)
    return subprocess.CompletedProcess(["rlctl", *args], code, out.getvalue(), err.getvalue())


def _command_name(args: list[str]) -> str:
    """The subcommand of `rlctl [--store DIR] [--debug] NAME ...`."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] == "--store" else 1
    return args[i] if i < len(args) else ""


def run_command(
    args: list[str], input: bytes | None, env: dict[str, str], cwd: Path, timeout: float = 600
) -> subprocess.CompletedProcess:
    """`rlctl ARGS`: in the worker (unless RLCTL_TEST_SUBPROCESS=1 or the command is in
    OWN_PROCESS), else as its own process."""
    if IN_PROCESS and _command_name(args) not in OWN_PROCESS:
        return run_in_process(args, input, env, cwd)
    return subprocess.run(
        [*RLCTL.split(), *args], input=input, capture_output=True, env=env, cwd=cwd, timeout=timeout
    )


def shared(rel: str) -> Path:
    """A file of ../shared/data (or $RLCTL_SHARED_DATA); tests that need the full upstream
    files skip without it."""
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"{path} not present (the full upstream files live in ../shared/data)")
    return path


def jsonl(text: bytes | str) -> list[dict]:
    data = text.encode() if isinstance(text, str) else text
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


def stored(path: str | Path) -> list[dict]:
    """The records of a stored artifact, whatever its format (Parquet at rest by default)."""
    from rlctl.records import RecordReader

    return list(RecordReader([str(path)]))


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def env(store: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k != "RLCTL_STORE"}
    e["RLCTL_STORE"] = str(store)
    e["HF_HUB_OFFLINE"] = "1"  # a test never waits on the network
    return e


@pytest.fixture
def rlctl(env: dict[str, str], tmp_path: Path) -> Runner:
    """`rlctl ARGS...` through the entry point in the worker (`run_command`), or as a real
    process with `extra_env=`; `shell=` runs a pipeline of real processes with $RLCTL in it."""

    def run(
        *args: str,
        input: bytes | None = None,
        shell: str | None = None,
        extra_env: dict[str, str] | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess:
        e = {**env, "RLCTL": RLCTL, **(extra_env or {})}
        if not shell and not extra_env:
            return run_command(list(args), input, e, tmp_path, timeout)
        cmd: str | list[str] = shell if shell else [*RLCTL.split(), *args]
        return subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            env=e,
            cwd=tmp_path,
            timeout=timeout,
            shell=bool(shell),
            executable="/bin/bash" if shell else None,
        )

    return run


def stages(rlctl: Runner, *commands: str) -> subprocess.CompletedProcess:
    """`$RLCTL A | $RLCTL B`, for a test about B rather than the pipe: each stage runs to
    completion (all but the last must succeed) and hands its stdout to the next, so every
    stage runs in the worker. B sees what the pipe would give it: the same records,
    carrying A's run id, so its lineage and its upstream check are the same."""
    data: bytes | None = None
    for i, command in enumerate(commands):
        r = rlctl(*shlex.split(command), input=data)
        if i < len(commands) - 1:
            assert r.returncode == 0, r.stderr.decode()
        data = r.stdout
    return r


@pytest.fixture
def sql(rlctl: Runner) -> Callable[[str], list[dict]]:
    def query(q: str) -> list[dict]:
        r = rlctl("sql", "--json", q)
        assert r.returncode == 0, r.stderr.decode()
        return jsonl(r.stdout)

    return query


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`rlctl model tiny`, built once per test session through the real command."""
    root = tmp_path_factory.mktemp("tiny")
    out = root / "model"
    r = subprocess.run(
        [*RLCTL.split(), "--store", str(root / "store"), "model", "tiny", str(out)],
        capture_output=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert r.returncode == 0, r.stderr.decode()
    return out


def compare_summary(store: Path) -> dict:
    """The newest `compare-logprobs` run's summary: {trainer setting: metrics}."""
    from rlctl.store import Index, Store

    rows = (
        Index(Store(store))
        .query(
            "SELECT config FROM runs WHERE command = 'compare-logprobs' ORDER BY started_at DESC LIMIT 1"
        )
        .rows
    )
    return orjson.loads(rows[0][0])["summary"]
