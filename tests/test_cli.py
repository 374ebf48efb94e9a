"""The command line itself: help, version, store resolution, usage errors, lazy imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Runner

HEAVY = ("torch", "transformers", "trl", "vllm", "lm_eval", "datasets")


def imported_modules(args: list[str], env: dict[str, str]) -> set[str]:
    """Top-level modules a real `rlctl ARGS` process imported (python -X importtime)."""
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "rlctl", *args],
        capture_output=True,
        env=env,
        text=True,
    )
    names = set()
    for line in r.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def test_torch_is_installed_so_the_import_checks_mean_something() -> None:
    import importlib.util

    assert importlib.util.find_spec("torch") is not None
    assert importlib.util.find_spec("datasets") is not None


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["data", "pull", "--help"],
        ["sql", "--help"],
        ["runs", "ls", "--help"],
        ["judge", "--help"],
        ["rollout", "--help"],
        ["compare-logprobs", "--help"],
        ["serve", "vllm", "--help"],
        ["model", "tiny", "--help"],
        ["train", "dpo", "--help"],
        ["train", "dpo", "--help"],
    ],
)
def test_help_imports_nothing_heavy(args: list[str], env: dict[str, str]) -> None:
    mods = imported_modules(args, env)
    assert "click" in mods  # the measurement works
    assert not mods & set(HEAVY), mods & set(HEAVY)


def test_pulling_a_known_dataset_from_a_file_imports_nothing_heavy(
    env: dict[str, str], store: Path
) -> None:
    """Nothing heavy; DuckDB only to write the Parquet artifact (in memory): a writer never
    opens the store's index."""
    mods = imported_modules(["data", "pull", "gsm8k", "--sample", "--limit", "1"], env)
    assert not mods & set(HEAVY)
    assert list(store.glob("artifacts/*/prompts.parquet"))
    assert not (store / "index.duckdb").exists()


def test_rule_based_judging_imports_nothing_heavy(env: dict[str, str], tmp_path: Path) -> None:
    rollout = tmp_path / "r.jsonl"
    rollout.write_text('{"id": "a", "prompt": "p", "completion": "#### 1", "reference": "1"}\n')
    for judge in ("math", "format"):
        mods = imported_modules(["judge", "-i", str(rollout), "--judge", judge], env)
        assert "rlctl" in mods and not mods & set(HEAVY), (judge, mods & set(HEAVY))


def test_help_lists_every_command_with_examples(rlctl: Runner) -> None:
    r = rlctl("--help")
    assert r.returncode == 0
    out = r.stdout.decode()
    from rlctl.cli import COMMANDS

    for name in COMMANDS:
        assert f"\n  {name} " in out
    assert "Examples:" in out
    for cmd in (
        ["data", "pull"],
        ["data", "validate"],
        ["judge"],
        ["rollout"],
        ["compare-logprobs"],
        ["serve", "vllm"],
        ["model", "tiny"],
        ["train", "sft"],
        ["train", "beta-dpo"],
        ["sql"],
        ["runs", "ls"],
        ["runs", "tail"],
    ):
        sub = rlctl(*cmd, "--help")
        assert sub.returncode == 0 and "Example" in sub.stdout.decode(), cmd


def test_version(rlctl: Runner) -> None:
    from rlctl import __version__

    r = rlctl("--version")
    assert r.returncode == 0 and __version__ in r.stdout.decode()


def test_store_resolution_flag_then_env_then_cwd(
    rlctl: Runner, env: dict[str, str], tmp_path: Path
) -> None:
    env_store = env["RLCTL_STORE"]
    assert rlctl("store", "path").stdout.decode().strip() == env_store
    assert rlctl("--store", "flagged", "store", "path").stdout.decode().strip() == str(
        tmp_path / "flagged"
    )
    r = rlctl("store", "path", extra_env={"RLCTL_STORE": ""})
    assert r.stdout.decode().strip() == str(tmp_path / ".rlctl")


@pytest.mark.parametrize(
    "args",
    [
        ["data", "pull", "gsm8k", "--no-such-flag"],
        ["nope"],
        ["data", "pull"],
        ["runs", "ls", "-n", "x"],
    ],
)
def test_usage_errors_are_one_line_exit_2(rlctl: Runner, args: list[str]) -> None:
    r = rlctl(*args)
    assert r.returncode == 2
    err = r.stderr.decode().strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rlctl: error:"), err
    assert "--help" in err[0]


def test_debug_shows_the_traceback(rlctl: Runner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n')
    plain = rlctl("data", "validate", "-i", str(bad), "--kind", "prompt")
    debug = rlctl("--debug", "data", "validate", "-i", str(bad), "--kind", "prompt")
    assert plain.returncode == debug.returncode == 2
    assert b"Traceback" not in plain.stderr
    assert b"Traceback" in debug.stderr


def test_config_file_set_and_flags_precedence(rlctl: Runner, sql, tmp_path: Path) -> None:
    conf = tmp_path / "pull.yaml"
    conf.write_text("limit: 7\nsample: true\nshuffle: true\nseed: 3\n")
    r = rlctl("data", "pull", "gsm8k", "-c", str(conf), "--set", "limit=5", "--limit", "4")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 4  # flag beats --set beats file
    r = rlctl("data", "pull", "gsm8k", "-c", str(conf), "--set", "limit=5")
    assert len(r.stdout.splitlines()) == 5
    (row,) = sql("SELECT config FROM runs ORDER BY started_at DESC LIMIT 1")
    assert row["config"]["limit"] == 5 and row["config"]["seed"] == 3
    assert row["config"]["shuffle"] is True


def test_unknown_config_key_says_did_you_mean(rlctl: Runner, tmp_path: Path) -> None:
    conf = tmp_path / "pull.yaml"
    conf.write_text("limt: 7\n")
    r = rlctl("data", "pull", "gsm8k", "--sample", "-c", str(conf))
    assert r.returncode == 2
    assert "did you mean 'limit'" in r.stderr.decode()
    r = rlctl("data", "pull", "gsm8k", "--sample", "--set", "sed=1")
    assert r.returncode == 2 and "did you mean 'seed'" in r.stderr.decode()


def test_a_command_run_inside_another_program_leaves_its_streams_as_they_were(
    rlctl: Runner, env: dict[str, str], tmp_path: Path, tiny_model: Path
) -> None:
    """`train` points fd 1 at stderr while transformers prints (records keep stdout); run
    through the entry point inside a program (a notebook, this test process), the next
    command's records must still reach its own stdout, and fd 1 must be the one it was."""
    import os

    from tests.conftest import jsonl, run_in_process

    data = rlctl("data", "pull", "gsm8k", "--sample", "--limit", "4").stdout
    fd1 = os.fstat(1)
    train = ["train", "sft", "--model", str(tiny_model), "--target", "meta.solution"]
    r = run_in_process([*train, "--max-steps", "1"], data, env, tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    assert (os.fstat(1).st_dev, os.fstat(1).st_ino) == (fd1.st_dev, fd1.st_ino)
    gen = ["rollout", "--model", str(tiny_model), "--limit", "2", "--max-tokens", "4"]
    r = run_in_process(gen, data, env, tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    assert [rec["id"] for rec in jsonl(r.stdout)] == [rec["id"] for rec in jsonl(data)[:2]]
