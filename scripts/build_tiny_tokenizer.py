"""Build the small tokenizer bundled in rlctl/data/tokenizer/ (run once; the output is committed).

A byte-level BPE with Qwen2's pre-tokenizer and Qwen2.5's special tokens and chat template,
trained on the bundled dataset samples. Qwen2.5's own 151k-token vocabulary would make the
"tiny" model 20M parameters of embeddings; this one keeps `rlctl model tiny` at a few hundred
thousand while every code path (chat template, special tokens, Qwen2Tokenizer loading in
transformers and vLLM) stays the real one.

Run: .venv/bin/python scripts/build_tiny_tokenizer.py [--qwen-config PATH]
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "rlctl" / "data" / "samples"
OUT = ROOT / "rlctl" / "data" / "tokenizer"
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 1024


def corpus() -> list[str]:
    texts = []
    for line in (SAMPLES / "gsm8k-test.jsonl").read_text().splitlines():
        row = json.loads(line)
        texts += [row["question"], row["answer"]]
    for line in (SAMPLES / "mbpp-test.jsonl").read_text().splitlines():
        row = json.loads(line)
        texts += [row["text"], row["code"], *row["test_list"]]
    with gzip.open(SAMPLES / "hh-rlhf-helpful-base-test.jsonl.gz", "rt") as f:
        for line in f:
            row = json.loads(line)
            texts += [row["chosen"], row["rejected"]]
    texts += ["You are a helpful assistant.", "system", "user", "assistant", "#### "]
    return texts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--qwen-config",
        default=ROOT.parent / "shared/data/tokenizers/qwen2.5-instruct/tokenizer_config.json",
    )
    args = ap.parse_args()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer)
    OUT.mkdir(parents=True, exist_ok=True)
    tok.model.save(str(OUT))  # vocab.json + merges.txt: what Qwen2Tokenizer loads
    tok.save(str(OUT / "tokenizer.json"))
    qwen = json.loads(Path(args.qwen_config).read_text())
    config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "add_bos_token": False,
        "add_prefix_space": False,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "model_max_length": 2048,
        "split_special_tokens": False,
        "chat_template": qwen["chat_template"],
        "added_tokens_decoder": {
            str(tok.token_to_id(t)): {
                "content": t,
                "special": True,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "single_word": False,
            }
            for t in SPECIALS
        },
    }
    (OUT / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"{tok.get_vocab_size()} tokens -> {OUT}")


if __name__ == "__main__":
    main()
