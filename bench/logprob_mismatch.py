"""Generator/trainer logprob mismatch for every pairing of generator (hf, vLLM server; fp32,
bf16, bf16 + fp32 LM head) and trainer (fp32, bf16, bf16 + fp32 LM head), on the tiny model.

The same measurement `rlctl compare-logprobs` makes; the figures back the claims in
docs/generation.md. Run: `.venv/bin/python bench/logprob_mismatch.py [--prompts 16]`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from report import machine, publish, tiny, vllm_server
from rollout_throughput import prompts

from rlctl.backends.generation import Sampling
from rlctl.stages.compare_logprobs import Mismatch, Recomputer, Setting

SETTINGS = {
    "fp32": ("float32", False),
    "bf16": ("bfloat16", False),
    "bf16 + fp32 head": ("bfloat16", True),
}


def records(backend, ps, sampling: Sampling) -> list[dict]:
    out = []
    for gens in backend.generate(ps, sampling):
        for g in gens:
            out.append(
                {
                    "prompt_token_ids": g.prompt_token_ids,
                    "completion_token_ids": g.token_ids,
                    "completion_logprobs": g.logprobs,
                }
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--prompts", type=int, default=16)
    args = ap.parse_args()
    ps = prompts(args.prompts)
    sampling = Sampling(n=2, temperature=1.0, max_tokens=48, logprobs=True)
    generated: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as d:
        model = tiny(Path(d))
        from rlctl.backends.generation.hf import HFBackend
        from rlctl.backends.generation.openai_api import OpenAIBackend

        for name, (dtype, head) in SETTINGS.items():
            hf = HFBackend(str(model), dtype=dtype, fp32_lm_head=head, seed=0)
            generated[f"hf {name}"] = records(hf, ps, sampling)
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        for name, (dtype, head) in SETTINGS.items():
            flags = [
                "--dtype",
                dtype,
                "--max-model-len",
                "1024",
                *(["--fp32-lm-head"] if head else []),
            ]
            with vllm_server(model, Path(d) / "store", *flags) as url:
                client = OpenAIBackend(url, None, concurrency=16)
                generated[f"vLLM {name}"] = records(client, ps, sampling)
                client.close()
        rows = []
        for tname, (dtype, head) in SETTINGS.items():
            trainer = Recomputer(str(model), Setting(tname, dtype, head))
            for gname, recs in generated.items():
                m = Mismatch()
                for rec, lp in zip(recs, trainer.logprobs(recs, [1.0] * len(recs)), strict=True):
                    m.add(rec["completion_logprobs"], lp)
                s = m.summary()
                rows.append(
                    (
                        gname,
                        tname,
                        s["max_abs_delta"],
                        s["mean_abs_delta"],
                        s["prob_abs_diff_mean"],
                        s["tokens"],
                    )
                )
    lines = [
        "# Generator vs trainer logprob mismatch",
        "",
        f"`python bench/logprob_mismatch.py --prompts {args.prompts}` on {machine()}: the tiny "
        "model, GSM8K prompts, 2 samples each at temperature 1.0, 48 tokens; vLLM is the CPU "
        "build behind `rlctl serve vllm` (processed logprobs), the trainer is transformers.",
        "",
        "| generator | trainer | max abs Δ | mean abs Δ | mean abs Δp | tokens |",
        "| --- | --- | --- | --- | --- | --- |",
        *(
            f"| {g} | {t} | {mx:.2e} | {mn:.2e} | {p:.2e} | {n:.0f} |"
            for g, t, mx, mn, p, n in rows
        ),
        "",
        "Matching precision on both sides (fp32/fp32) puts |Δ| at float rounding (max < 1e-4,",
        "for both generators). A bf16 side raises it by three to four orders of magnitude, and",
        "even bf16 on both sides does not match: generation (incremental, KV cache) and training",
        "(one full forward) round differently. On this 128-wide, 1k-vocabulary model the fp32",
        "LM head changes |Δ| by a few percent only: the error comes mostly from the layers. The",
        "head's share grows with the vocabulary (its logits feed a softmax over all of it); a",
        "measurement on a real model needs a GPU session.",
    ]
    publish("logprob_mismatch", lines)


if __name__ == "__main__":
    main()
