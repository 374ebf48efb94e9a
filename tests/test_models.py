"""rlctl.models: the fp32 LM head keeps tied weights tied and stores no fp32 copy."""

from __future__ import annotations

from pathlib import Path

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
