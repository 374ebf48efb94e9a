"""A tiny random-weight Qwen2 causal LM with the bundled tokenizer.

For smoke-testing a pipeline or a cluster before spending GPU hours, and for every test here:
nothing can be downloaded, and the real code paths (chat template, Qwen2 modelling code, vLLM's
loader) still run. Head size 32 (hidden 128, 4 heads) because vLLM's CPU attention needs >= 32.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from rlctl.data import SAMPLES
from rlctl.files import temp_name

TOKENIZER_DIR = SAMPLES.parent / "tokenizer"
TINY = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
}


def tiny_shape(layers: int = 2, hidden_size: int = 128, heads: int | None = None) -> dict[str, int]:
    """Config overrides for `build_tiny`: a wider model gets an MLP twice its width and full
    multi-head attention (heads default to hidden/32); the 128-wide default keeps its 4 heads
    and 2 KV heads. Heads must be >= 32 wide for vLLM's CPU attention."""
    from rlctl.errors import BadInput

    shape = {"num_hidden_layers": layers}
    if hidden_size == TINY["hidden_size"] and heads is None:
        return shape
    heads = heads or hidden_size // 32
    if hidden_size % heads or hidden_size // heads < 32:
        raise BadInput(
            f"--hidden-size {hidden_size} --heads {heads}: the width must split into "
            "heads of at least 32 each (vLLM's CPU attention), e.g. --hidden-size 256 "
            "--heads 8"
        )
    return shape | {
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
    }


def build_tiny(
    out: str | Path, seed: int = 0, chat_template: bool = True, **overrides: Any
) -> dict[str, Any]:
    """Write model + tokenizer to `out` atomically (built next to it, renamed when complete);
    returns a summary (parameters, config) for the run record. Without `chat_template` the
    tokenizer has none, like a base model's: a plain-text model (synth:arith) then refuses a
    chat-template run with one line instead of being sampled in a format it never saw."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, Qwen2Config

    from rlctl.logs import quiet_transformers

    quiet_transformers()

    out = Path(out)
    if out.exists():
        from rlctl.errors import BadInput

        raise BadInput(f"{out}: already exists; choose a new directory")
    tmp = temp_name(out)
    tok = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    if not chat_template:
        tok.chat_template = None
    vocab = (len(tok) + 63) // 64 * 64  # padded like real checkpoints (Qwen2.5: 151,936)
    params = {**TINY, **overrides}
    config = Qwen2Config(
        vocab_size=vocab,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        rope_theta=10000.0,
        **params,
    )
    config.dtype = "float32"
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        GenerationConfig(
            eos_token_id=[tok.eos_token_id, tok.convert_tokens_to_ids("<|endoftext|>")],
            pad_token_id=tok.pad_token_id,
            bos_token_id=None,
        ).save_pretrained(tmp)
        license_file = TOKENIZER_DIR / "LICENSE.qwen2.5"
        if license_file.exists():
            shutil.copy(license_file, tmp / "LICENSE.tokenizer")
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = sum(p.numel() for p in model.parameters())
    return {
        "parameters": n,
        "vocab_size": vocab,
        "seed": seed,
        "chat_template": chat_template,
        **params,
    }
