"""DESIGN.md section 5: several writers and a reader in a loop, no lock error, nothing lost."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from tests.conftest import RLCTL, jsonl

pytestmark = pytest.mark.slow


class SqlLoop(threading.Thread):
    """`rlctl sql` run back to back while the writers work, every exit code kept."""

    def __init__(self, env: dict, cwd: Path) -> None:
        super().__init__(daemon=True)
        self.env, self.cwd = env, cwd
        self.stop = threading.Event()
        self.results: list[subprocess.CompletedProcess] = []

    def run(self) -> None:
        while not self.stop.is_set():
            self.results.append(
                subprocess.run(
                    [
                        *RLCTL.split(),
                        "sql",
                        "--csv",
                        "SELECT status, count(*) FROM runs GROUP BY 1; "
                        "SELECT count(*) FROM prompts",
                    ],
                    env=self.env,
                    cwd=self.cwd,
                    capture_output=True,
                )
            )


def _check(procs: list[subprocess.Popen], *loops: SqlLoop) -> list[bytes]:
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
        outs.append(out)
    for loop in loops:
        loop.stop.set()
        loop.join(timeout=120)
        assert len(loop.results) >= 3, "the reader loop barely ran"
        for r in loop.results:
            assert r.returncode == 0, r.stderr.decode()
    return outs


def test_ten_writers_and_a_reader(env: dict, sql, tmp_path: Path) -> None:
    """Ten writer slots, each pulling three times in a row, so two readers overlap them."""
    loops = [SqlLoop(env, tmp_path), SqlLoop(env, tmp_path)]
    for loop in loops:
        loop.start()
    writer = f"set -e; for j in 1 2 3; do {RLCTL} data pull gsm8k --sample; done"
    procs = [
        subprocess.Popen(
            ["bash", "-c", writer],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(10)
    ]
    outs = _check(procs, *loops)
    assert all(len(jsonl(o)) == 600 for o in outs)
    assert sql("SELECT status, count(*) AS n FROM runs GROUP BY 1") == [{"status": "ok", "n": 30}]
    assert sql("SELECT count(*) AS n, count(DISTINCT run_id) AS runs FROM prompts") == [
        {"n": 6000, "runs": 30}
    ]


def test_concurrent_pipes_and_a_reader(env: dict, sql, tmp_path: Path) -> None:
    loop = SqlLoop(env, tmp_path)
    loop.start()
    pipe = (
        f"set -eo pipefail; for j in 1 2 3; do {RLCTL} data pull gsm8k --sample --shuffle "
        f"--seed $SEED$j | {RLCTL} data validate --kind prompt; done"
    )
    procs = [
        subprocess.Popen(
            ["bash", "-c", pipe],
            env={**env, "SEED": str(i)},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(4)
    ]
    _check(procs, loop)
    by = {
        (r["command"], r["status"]): r["n"]
        for r in sql("SELECT command, status, count(*) AS n FROM runs GROUP BY ALL")
    }
    assert by == {("data pull", "ok"): 12, ("data validate", "ok"): 12}
    assert sql("SELECT count(*) AS n FROM lineage WHERE via = 'record'") == [{"n": 12}]
    assert sql("SELECT count(*) AS n FROM prompts") == [{"n": 2400}]
