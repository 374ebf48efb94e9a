"""The environment lock every run records: each installed distribution as pip lists it, stored
once per distinct environment (content-addressed) and queryable next to the runs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import orjson

from tests.conftest import Runner


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _run_id(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, r.stderr.decode()
    return r.stderr.decode().rsplit("(run ", 1)[1].split(")")[0]


def _env_of(store: Path, run_id: str) -> str:
    return orjson.loads((store / "runs" / run_id / "run.json").read_bytes())["environment"]


def _fake_distribution(site: Path, name: str, version: str) -> None:
    for old in site.glob(f"{name}-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_every_run_records_the_environment_once_by_content(
    rlctl: Runner, store: Path, sql, tmp_path: Path
) -> None:
    """The lock lists what `pip list` lists, name for name and version for version; two runs in
    one environment share one file, named by the hash of its content; SQL finds a run's version
    of any package."""
    first = _run_id(rlctl("data", "pull", "gsm8k", "--sample", "--limit", "2"))
    second = _run_id(rlctl("data", "pull", "gsm8k", "--sample", "--limit", "3"))
    env_id = _env_of(store, first)
    assert env_id == _env_of(store, second)
    files = list((store / "environments").iterdir())
    assert [f.name for f in files] == [f"{env_id}.json"]
    raw = files[0].read_bytes()
    lock = orjson.loads(raw)
    canonical = json.dumps(lock, sort_keys=True, separators=(",", ":")).encode()
    assert hashlib.sha256(canonical).hexdigest()[:16] == env_id

    listed = subprocess.run(
        [sys.executable, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    pip = {_norm(d["name"]): d["version"] for d in json.loads(listed.stdout)}
    assert lock["packages"] == pip
    assert lock["python"] == ".".join(map(str, sys.version_info[:3]))

    from importlib import metadata

    rows = sql(
        "SELECT r.run_id, p.version FROM runs r JOIN packages p USING (env_id) "
        "WHERE p.name = 'duckdb' ORDER BY r.started_at"
    )
    assert rows == [
        {"run_id": first, "version": metadata.version("duckdb")},
        {"run_id": second, "version": metadata.version("duckdb")},
    ]
    assert sql("SELECT count(*) AS n FROM environments") == [{"n": 1}]


def test_a_changed_environment_is_a_new_lock_and_runs_diff_names_the_package(
    rlctl: Runner, store: Path, sql, tmp_path: Path
) -> None:
    """Installing or upgrading one distribution changes the lock (the cache of the scan is keyed
    on the import path's folders, so it notices), and `runs diff` names that package."""
    site = tmp_path / "site"
    site.mkdir()
    extra = {"PYTHONPATH": str(site)}
    pull = ("data", "pull", "gsm8k", "--sample", "--limit", "2")
    before = _run_id(rlctl(*pull, extra_env=extra))
    _fake_distribution(site, "rlctl_probe", "1.0")
    installed = _run_id(rlctl(*pull, extra_env=extra))
    _fake_distribution(site, "rlctl_probe", "2.0")
    upgraded = _run_id(rlctl(*pull, extra_env=extra))
    ids = [_env_of(store, r) for r in (before, installed, upgraded)]
    assert len(set(ids)) == 3, ids
    assert len(list((store / "environments").glob("*.json"))) == 3

    r = rlctl("runs", "diff", installed, upgraded, "--json")
    assert r.returncode == 0, r.stderr.decode()
    code = [orjson.loads(x) for x in r.stdout.splitlines()]
    code = [(x["key"], x["a"], x["b"]) for x in code if x["section"] == "environment"]
    assert code == [("packages.rlctl-probe", "1.0", "2.0")]
    r = rlctl("runs", "diff", before, installed, "--json")
    code = [orjson.loads(x) for x in r.stdout.splitlines()]
    assert [(x["key"], x["b"]) for x in code if x["section"] == "environment"] == [
        ("packages.rlctl-probe", "1.0")
    ]
    assert sql(
        "SELECT version FROM runs JOIN packages USING (env_id) "
        f"WHERE name = 'rlctl-probe' AND run_id = '{upgraded}'"
    ) == [{"version": "2.0"}]


def test_the_scan_is_cached_and_a_rebuilt_index_reads_the_same_locks(
    store: Path, tmp_path: Path, monkeypatch
) -> None:
    """A second run in one environment reads the lock from the cache, not from every
    distribution's METADATA (~0.2 s); `store rebuild` derives the environments from the files."""
    from importlib import metadata

    from rlctl.store import Index, Run, Store

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    s = Store(store)
    with Run(s, "first") as run:
        env_id = run.info["environment"]
    assert list((tmp_path / "cache" / "rlctl").glob("environment-*.json"))

    def no_scan(*a, **k):  # the cache must answer
        raise AssertionError("the environment was scanned again")

    monkeypatch.setattr(metadata, "distributions", no_scan)
    with Run(s, "second") as run:
        assert run.info["environment"] == env_id
    index = Index(s)
    q = (
        "SELECT e.env_id, e.python, count(*) FROM environments e JOIN packages p USING (env_id) "
        "GROUP BY ALL"
    )
    before = index.query(q).rows
    assert index.rebuild() == 2
    assert index.query(q).rows == before and len(before) == 1
