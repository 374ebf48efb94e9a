"""Compute the LM head in fp32 on a bf16/fp16 model (ScaleRL's fix for the generator/trainer
log-probability mismatch).

The head's matmul is where low precision hurts most: logits over a large vocabulary feed a
softmax, and bf16 rounding there shifts every token's log-probability. Casting the head's
*input and weight at forward time* (not the stored weight) keeps a tied embedding tied and
adds no persistent copy: the fp32 weight exists only during the matmul.
"""

from __future__ import annotations

from typing import Any


def enable_fp32_lm_head(model: Any) -> Any:
    """Patch `model`'s output embedding in place; idempotent; returns the model."""
    import torch
    import torch.nn.functional as F

    head = model.get_output_embeddings()
    if head is None:
        raise ValueError("model has no output embedding (lm_head) to run in fp32")
    if getattr(head, "_rlctl_fp32", False):
        return model

    def forward(hidden: torch.Tensor) -> torch.Tensor:
        bias = None if head.bias is None else head.bias.float()
        return F.linear(hidden.float(), head.weight.float(), bias)

    head.forward = forward
    head._rlctl_fp32 = True
    model.config.rlctl_fp32_lm_head = True
    return model
