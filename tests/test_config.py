"""Config resolution: defaults < file < --set < flags, unknown keys refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlctl import config
from rlctl.errors import BadInput

DEFAULTS = {"lr": 1e-5, "trainer": {"beta": 0.1, "loss": "sigmoid"}, "trl": {}}


def test_precedence_and_nesting(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("lr: 2.0e-5\ntrainer:\n  beta: 0.2\n")
    out = config.resolve(DEFAULTS, file=f, sets=["trainer.loss=ipo"], flags={"lr": 3e-5})
    assert out == {"lr": 3e-5, "trainer": {"beta": 0.2, "loss": "ipo"}, "trl": {}}


def test_set_values_are_yaml_scalars() -> None:
    assert config.parse_sets(["a=1", "b=true", "c=[1, 2]", "d=x=y", "e.f=1e-3"]) == {
        "a": 1,
        "b": True,
        "c": [1, 2],
        "d": "x=y",
        "e": {"f": 1e-3},
    }


def test_unknown_nested_key_names_the_path() -> None:
    with pytest.raises(BadInput, match=r"unknown key 'trainer.bta'; did you mean 'trainer.beta'"):
        config.resolve(DEFAULTS, sets=["trainer.bta=1"])


def test_open_sections_pass_through() -> None:
    out = config.resolve(DEFAULTS, sets=["trl.gradient_checkpointing=true"], open_sections=["trl"])
    assert out["trl"] == {"gradient_checkpointing": True}


def test_yaml_error_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("lr: 1\ntrainer: [unclosed\n")
    with pytest.raises(BadInput, match=r"c\.yaml:\d+: invalid YAML"):
        config.resolve(DEFAULTS, file=f)


def test_set_values_with_a_hash_stay_strings() -> None:
    assert config.parse_sets(["format_regex=#### -?[0-9]", "x=a # b", "y='#q'"]) == {
        "format_regex": "#### -?[0-9]",
        "x": "a # b",
        "y": "#q",
    }


def test_set_without_equals_is_refused() -> None:
    with pytest.raises(BadInput, match="expected KEY=VALUE"):
        config.parse_sets(["lr"])


def test_exponent_floats_are_numbers_in_files_too(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("lr: 1e-5\n")
    assert config.resolve(DEFAULTS, file=f)["lr"] == 1e-5
