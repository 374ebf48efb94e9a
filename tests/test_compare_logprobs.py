"""`compare-logprobs` on hf generations of the tiny model: fp32 matches, bf16 does not."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.conftest import Runner, compare_summary, jsonl


@pytest.fixture(scope="module")
def generations(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Rollouts with logprobs from hf generators in fp32 and bf16 (with and without fp32 head)."""
    import os

    from tests.conftest import run_command

    d = tmp_path_factory.mktemp("gen")
    prompts = d / "p.jsonl"
    prompts.write_bytes(
        b"".join(
            orjson.dumps({"id": f"p{i}", "prompt": f"Question {i}: how many eggs?"}) + b"\n"
            for i in range(6)
        )
    )
    out = {}
    for name, flags in {
        "fp32": ["--dtype", "float32"],
        "bf16": ["--dtype", "bfloat16"],
        "bf16_head": ["--dtype", "bfloat16", "--fp32-lm-head"],
    }.items():
        path = d / f"{name}.jsonl"
        args = ["--store", str(d / "store"), "rollout", "-i", str(prompts), "--model"]
        args += [str(tiny_model), "-n", "2", "--max-tokens", "24", "--logprobs", *flags]
        r = run_command(args, None, dict(os.environ), d)
        assert r.returncode == 0, r.stderr.decode()
        path.write_bytes(r.stdout)
        out[name] = path
    return out


def _summary(rlctl: Runner, store: Path, rollouts: Path, model: Path, *flags: str) -> dict:
    r = rlctl("compare-logprobs", "-i", str(rollouts), "--model", str(model), *flags)
    assert r.returncode == 0, r.stderr
    return compare_summary(store)


def test_fp32_generator_fp32_trainer_agree(
    rlctl: Runner, sql, store: Path, tiny_model: Path, generations: dict
) -> None:
    (s,) = _summary(rlctl, store, generations["fp32"], tiny_model, "--dtype", "float32").values()
    assert s["max_abs_delta"] < 1e-4 and s["tokens"] > 100
    assert s["ess_fraction"] == pytest.approx(1.0, abs=1e-6)
    n = sql("SELECT count(*) AS n FROM logprob_diffs")[0]["n"]
    assert n == s["tokens"]


def test_bf16_generator_is_clearly_worse_and_fp32_head_changes_it(
    rlctl: Runner, store: Path, tiny_model: Path, generations: dict
) -> None:
    (fp32,) = _summary(rlctl, store, generations["fp32"], tiny_model, "--dtype", "float32").values()
    (bf16,) = _summary(rlctl, store, generations["bf16"], tiny_model, "--dtype", "float32").values()
    assert bf16["max_abs_delta"] > 100 * fp32["max_abs_delta"]
    assert bf16["max_abs_delta"] > 1e-4
    both = _summary(
        rlctl,
        store,
        generations["bf16_head"],
        tiny_model,
        "--dtype",
        "bfloat16",
        "--vs",
        "fp32_lm_head=true",
    )
    plain, head = both["bfloat16"], both["bfloat16 + fp32 head"]
    assert plain["mean_abs_delta"] != head["mean_abs_delta"]  # the head setting is applied


def test_plot_and_per_token_records(
    rlctl: Runner, tiny_model: Path, generations: dict, tmp_path: Path
) -> None:
    png = tmp_path / "m.png"
    r = rlctl(
        "compare-logprobs",
        "-i",
        str(generations["bf16"]),
        "--model",
        str(tiny_model),
        "--plot",
        str(png),
    )
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:4] == b"\x89PNG"
    rows = jsonl(r.stdout)
    assert {"delta", "generator_logprob", "trainer_logprob", "position", "token_id"} <= rows[
        0
    ].keys()
    assert b"prob_abs_diff_mean" in r.stderr and b"ess_fraction" in r.stderr


def test_rollouts_without_logprobs_are_refused(
    rlctl: Runner, tiny_model: Path, tmp_path: Path
) -> None:
    (tmp_path / "r.jsonl").write_bytes(
        orjson.dumps({"id": "a", "prompt": "p", "completion": "c"}) + b"\n"
    )
    r = rlctl("compare-logprobs", "-i", "r.jsonl", "--model", str(tiny_model))
    assert (
        r.returncode == 2 and "r.jsonl:1" in r.stderr.decode() and "--logprobs" in r.stderr.decode()
    )
