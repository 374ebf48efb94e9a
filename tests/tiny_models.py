"""Tiny random-weight models built on the spot, with a BPE tokenizer trained on bundled text:
real transformers objects, no hub, a few hundred KB."""

from __future__ import annotations

import json
from pathlib import Path

from rlctl.data import SAMPLES


def train_tokenizer(out: Path, vocab_size: int = 400):
    """A byte-level BPE with Qwen2's special tokens and a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [
        json.loads(line)["question"]
        for line in (SAMPLES / "gsm8k-test.jsonl").read_text().splitlines()
    ]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    fast.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    fast.save_pretrained(out)
    return fast


def tiny_reward_model(out: Path, seed: int = 0) -> Path:
    import torch
    from transformers import AutoModelForSequenceClassification, Qwen2Config

    tok = train_tokenizer(out)
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        num_labels=1,
        pad_token_id=tok.pad_token_id,
    )
    AutoModelForSequenceClassification.from_config(config).save_pretrained(out)
    return out


def overfit(model_dir: Path, examples: list[tuple[str, str]], out: Path, steps: int = 300) -> Path:
    """A copy of the model trained until it answers each prompt with its completion, then EOS:
    a model whose right answers are known, to check that an evaluation counts them."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    torch.manual_seed(0)
    rows = []
    for prompt, completion in examples:
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        c = tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rows.append((torch.tensor(p + c), torch.tensor([-100] * len(p) + c)))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = sum(model(input_ids=i[None], labels=y[None]).loss for i, y in rows) / len(rows)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
