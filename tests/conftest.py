"""Shared fixtures: a fresh store per test and the real `rlctl` executable in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
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
    """`rlctl ARGS...` as a real process; `shell=` runs a pipeline with $RLCTL in it."""

    def run(
        *args: str,
        input: bytes | None = None,
        shell: str | None = None,
        extra_env: dict[str, str] | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess:
        e = {**env, "RLCTL": RLCTL, **(extra_env or {})}
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
