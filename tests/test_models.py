"""rlctl.models: the fp32 LM head keeps tied weights tied and stores no fp32 copy; a model
view whose config gives vLLM an fp32 head."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlctl.models import enable_fp32_lm_head


def test_fp32_head_on_a_bf16_model(tiny_model: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16)
    ids = torch.tensor([[5, 17, 99, 3]])
    hidden = model.model(input_ids=ids).last_hidden_state
    plain = model(input_ids=ids).logits
    enable_fp32_lm_head(enable_fp32_lm_head(model))  # idempotent
    head = model(input_ids=ids).logits
    assert plain.dtype == torch.bfloat16 and head.dtype == torch.float32
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied
    assert model.lm_head.weight.dtype == torch.bfloat16  # no persistent fp32 copy
    expected = torch.nn.functional.linear(hidden.float(), model.lm_head.weight.float())
    assert torch.equal(head, expected)
    assert not torch.equal(head, plain.float())  # the fp32 head is not bf16 rounding


def test_fp32_head_view_patches_the_config_and_links_the_weights(
    tiny_model: Path, tmp_path: Path
) -> None:
    """What TRL's colocated vLLM loads under `--vllm-mode colocate --fp32-lm-head`."""
    import json

    import torch
    from transformers import AutoModelForCausalLM

    from rlctl.models.head_dtype import with_fp32_head

    view = with_fp32_head(str(tiny_model), tmp_path / "view")
    assert with_fp32_head(str(tiny_model), tmp_path / "view") == view  # idempotent
    config = json.loads((view / "config.json").read_text())
    assert config["head_dtype"] == "float32"
    assert config | {"head_dtype": None} == json.loads((tiny_model / "config.json").read_text()) | {
        "head_dtype": None
    }
    weights = view / "model.safetensors"
    assert weights.is_symlink() and weights.resolve() == (tiny_model / "model.safetensors")
    a = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
    b = AutoModelForCausalLM.from_pretrained(view).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fp32_head_view_of_an_uncached_hub_model_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rlctl.errors import BadInput
    from rlctl.models.head_dtype import with_fp32_head

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BadInput, match="not in the local Hugging Face cache"):
        with_fp32_head("Qwen/Qwen2.5-0.5B-Instruct", tmp_path / "view")
