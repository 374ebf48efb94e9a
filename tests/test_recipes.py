"""Every recipe in configs/ resolves: rlctl keys known, trainer keys real fields of TRL's
config class (checked against the installed TRL), and a tiny one runs end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlctl.config import resolve
from rlctl.stages.train import DEFAULTS
from rlctl.train.config import trl_config
from tests.conftest import ROOT, Runner, stages

TRAINERS = ("sft", "dpo", "beta-dpo", "grpo")  # configs/ also holds accelerate, slurm, baselines
RECIPES = sorted(p for p in (ROOT / "configs").glob("*/*.yaml") if p.parent.name in TRAINERS)


def test_there_is_a_recipe_and_a_tiny_variant_per_trainer() -> None:
    kinds = {p.parent.name for p in RECIPES}
    assert kinds >= {"sft", "dpo", "beta-dpo", "grpo"}
    for kind in kinds:
        assert any(p.stem.endswith("-tiny") for p in RECIPES if p.parent.name == kind), kind


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_resolves_against_trl(recipe: Path, tmp_path: Path) -> None:
    conf = resolve(DEFAULTS, file=recipe, open_sections=["trainer"])
    section = dict(conf["trainer"])
    section.pop("bf16", None)  # a GPU recipe; this machine may have none
    section.pop("gradient_checkpointing", None)
    args = trl_config(recipe.parent.name, section, tmp_path)
    assert args.output_dir == str(tmp_path)


@pytest.mark.slow
def test_tiny_grpo_recipe_runs(rlctl: Runner, sql, tiny_model: Path, tmp_path: Path) -> None:
    (tmp_path / "tiny").symlink_to(tiny_model)
    r = stages(
        rlctl,
        "data pull gsm8k --sample --limit 16",
        f"train grpo -c {ROOT}/configs/grpo/gsm8k-tiny.yaml --max-steps 2",
    )
    assert r.returncode == 0, r.stderr
    assert sql("SELECT count(DISTINCT step) AS n FROM train_samples") == [{"n": 2}]


@pytest.mark.parametrize(
    "path", sorted((ROOT / "configs" / "accelerate").glob("*.yaml")), ids=lambda p: p.stem
)
def test_accelerate_configs_parse(path: Path) -> None:
    """accelerate's own loader; multi-GPU runs themselves need GPUs (not in CI)."""
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    assert config.num_processes == 8 and str(config.mixed_precision) in (
        "bf16",
        "PrecisionType.BF16",
    )


def test_the_arith_preference_recipe_serves_beta_dpo_too(tmp_path: Path) -> None:
    """`make demo`, bench/learning.py and tests/test_learning.py pass configs/dpo/arith-tiny.yaml
    to `train beta-dpo` as well: its trainer keys must be β-DPO's config fields too."""
    recipe = ROOT / "configs" / "dpo" / "arith-tiny.yaml"
    conf = resolve(DEFAULTS, file=recipe, open_sections=["trainer"])
    args = trl_config("beta-dpo", dict(conf["trainer"]), tmp_path)
    assert list(args.loss_type) == ["sigmoid", "sft"] and list(args.loss_weights) == [0.2, 1.0]
