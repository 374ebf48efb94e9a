"""`train grpo`: reward functions from the judge registry, where generation runs (vLLM
server or colocated engine), checked before any model loads, and the GRPOTrainer recipe."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from rlctl.backends.judges import parse_route, parse_spec, reward_function
from rlctl.train.data import grpo_rows, prompt_format
from rlctl.train.recipe import Recipe

log = logging.getLogger("rlctl")


def reward_functions(
    specs: list[str], options: dict[str, Any]
) -> tuple[list[Callable[..., Any]], list[str], list[float]]:
    """TRL reward functions from judge specs (`math`, `format=0.1`, `module:function`), with
    their judge names and weights; a judge that does not exist fails here, before the model."""
    funcs, names, weights = [], [], []
    for spec in specs:
        route = parse_route(spec)[0]
        name, weight = parse_spec(spec)
        # the weight goes to TRL's reward_weights; a routed function returns None for the
        # records of other sources, which TRL leaves out of that sample's weighted sum
        funcs.append(reward_function(name if route is None else f"{route}:{name}", options))
        names.append(name if route is None else f"{route}:{name}")
        weights.append(weight)
    if funcs:
        funcs[0] = with_row_columns(funcs[0])
    return funcs, names, weights


def with_row_columns(func: Callable[..., Any]) -> Callable[..., Any]:
    """The reward function that also logs each completion's prompt `id` and `reference` to
    TRL's completion log (`log_extra`, gathered from every process with the completions), so
    the `train_samples` written from that log join their prompt records."""

    @functools.wraps(func)
    def reward(completions: list[Any], **kw: Any) -> Any:
        log_extra = kw.get("log_extra")
        if log_extra is not None:
            n = len(completions)
            for column in ("id", "reference"):
                values = kw.get(column)
                log_extra(column, list(values) if values is not None else [None] * n)
        return func(completions, **kw)

    return reward


def vllm_section(conf: dict[str, Any], store: Any = None) -> dict[str, Any]:
    """GRPOConfig's vLLM keys for `--vllm-mode`, checked before any model loads. Server mode
    needs a vLLM server that takes weight updates: `rlctl serve vllm --weight-sync` (found by
    `--vllm-endpoint`), or any such server by URL (`trl vllm-serve` starts the same). Colocate
    mode needs vLLM installed next to the trainer."""
    import importlib.util

    from rlctl.errors import BadInput
    from rlctl.net import reachable

    mode = conf["vllm_mode"]
    if mode == "colocate":
        if importlib.util.find_spec("vllm") is None:
            raise BadInput("--vllm-mode colocate needs vllm in the training environment")
        return {"use_vllm": True, "vllm_mode": "colocate"}
    url = (conf.get("vllm_server_url") or "").rstrip("/")
    if conf.get("vllm_endpoint"):
        from rlctl.store.refs import find_endpoint

        endpoint = find_endpoint(store, conf["vllm_endpoint"])
        if not endpoint.get("weight_sync"):
            raise BadInput(
                f"the endpoint of run {endpoint['run_id']} takes no weight updates; "
                "start it with 'rlctl serve vllm --weight-sync'"
            )
        url = endpoint["url"].removesuffix("/v1")
        if conf.get("fp32_lm_head") and not endpoint.get("fp32_lm_head"):
            log.warning("--fp32-lm-head: the server's head is not fp32 (serve --fp32-lm-head)")
    elif url and conf.get("fp32_lm_head"):
        log.warning("--fp32-lm-head: the server's own head dtype applies to generation")
    if not url:
        raise BadInput("--vllm-mode server needs --vllm-endpoint latest or --vllm-server-url URL")
    if not reachable(url):
        raise BadInput(
            f"vLLM server {url}: nothing answers there; start 'rlctl serve vllm --weight-sync' "
            "first (the grpo-vllm Slurm template does, with a health wait)"
        )
    return {"use_vllm": True, "vllm_mode": "server", "vllm_server_base_url": url}


def require_gpu(mode: str) -> None:
    """Both vLLM modes move the policy's weights into vLLM every step, which only works on
    CUDA: say so before the model loads, not minutes later from inside TRL or vLLM."""
    import torch

    from rlctl.errors import BadInput

    if torch.cuda.is_available():
        return
    if mode == "server":
        raise BadInput(
            "--vllm-mode server needs a CUDA GPU on the trainer: TRL sends the weights to the "
            "server over NCCL. On a CPU, leave out --vllm-mode (transformers generates)"
        )
    raise BadInput(
        "--vllm-mode colocate needs a CUDA GPU: vLLM's CPU backend repacks its linear weights "
        "after loading, so TRL cannot update them. On a CPU, leave out --vllm-mode"
    )


def check_reward_routing(rows: list[dict[str, Any]], specs: list[str], mode: str) -> None:
    """What would quietly reward the wrong thing: several rewards over a mix of sources with
    no routes (math would read an MBPP program, code would run a GSM8K answer), and prompts
    that ask for <answer> tags rewarded by a math mode that looks outside them."""
    sources = sorted({str(r["source"]) for r in rows if r.get("source") is not None})
    routed = any(parse_route(s)[0] for s in specs)
    if len(specs) > 1 and len(sources) > 1 and not routed:
        log.warning(
            "every sample gets every reward (%s) across sources %s; route them, e.g. "
            "--reward %s:math --reward %s:code",
            ", ".join(specs),
            ", ".join(sources),
            sources[0],
            sources[1],
        )
    uses_math = any(parse_spec(s)[0] == "math" for s in specs)
    asks_tags = any(
        isinstance(r["prompt"], list)
        and any("<answer>" in str(m.get("content", "")) for m in r["prompt"])
        for r in rows
    )
    if uses_math and asks_tags and mode != "answer-tag":
        log.warning(
            "the prompts ask for <answer> tags, but the math reward's mode %r also rewards "
            "answers outside them; pass --math-mode answer-tag to reward only tagged answers",
            mode,
        )


class GRPORecipe(Recipe):
    """Prompt rows rewarded by judges; TRL has no prompt-length drop to count, and casts the
    LM head to fp32 itself (policy and reference)."""

    kind = "grpo"
    counts_rows = False
    own_fp32_head = False
    in_order: ClassVar[dict[str, Any]] = {"shuffle_dataset": False}  # its own sampler's switch
    trl_defaults: ClassVar[dict[str, Any]] = {
        "num_generations": 2,
        "max_completion_length": 64,
        "log_completions": False,
    }

    def config_class(self) -> type:
        from trl import GRPOConfig

        return GRPOConfig

    def rows(self, located: Iterable[tuple[str, dict[str, Any]]], conf: dict[str, Any]) -> list:
        rows = grpo_rows(located, prompt_format(conf))
        check_reward_routing(rows, list(conf["reward"]), conf["mode"])
        return rows

    def resolve(
        self, section: dict[str, Any], conf: dict[str, Any], run: Any, rows: list
    ) -> dict[str, Any]:
        if conf["fp32_lm_head"]:
            section["cast_lm_head_to_fp32"] = True  # TRL's own, on policy and reference
        if conf.get("init_kl_coef") is not None:
            section["beta"] = float(conf["init_kl_coef"])
        if conf.get("vllm_mode"):
            section |= vllm_section(conf, run.store)
            require_gpu(conf["vllm_mode"])
        return section

    def finish_job(self, job: Any, conf: dict[str, Any], run: Any) -> None:
        if conf.get("vllm_mode") == "colocate" and conf["fp32_lm_head"]:
            from rlctl.models.head_dtype import with_fp32_head

            # TRL's colocated engine loads `model.name_or_path` and takes no hf_overrides
            job.vllm_model = str(with_fp32_head(conf["model"], run.artifact_dir / "vllm-model"))

    def setup(self, run: Any, conf: dict[str, Any], args: Any) -> dict[str, Any]:
        from rlctl.errors import BadInput
        from rlctl.store import Run
        from rlctl.train.callbacks import SampleLog

        # the judges' own sections (resolved with the config), never the trainer's keys:
        # its `model` is the policy, not the llm judge's model
        funcs, names, args.reward_weights = reward_functions(conf["reward"], conf["judge"])
        writer = run.artifact("samples", "train_sample") if isinstance(run, Run) else None
        samples = SampleLog(writer, int(conf["log_every"]), names, args.reward_weights, run.run_id)
        if conf.get("kl_target") and not args.beta:
            raise BadInput("--kl-target needs a KL term: set --init-kl-coef (> 0)")
        if conf.get("objective") == "maxent-listwise":
            from rlctl.train.maxent import check_batch

            check_batch(args)
        return {"funcs": funcs, "samples": samples}

    def build(
        self,
        common: dict[str, Any],
        conf: dict[str, Any],
        job: Any,
        built: Any,
        run: Any,
        state: Any,
    ) -> Any:
        if conf.get("objective") == "maxent-listwise":
            from rlctl.train.maxent import MaxEnt, make_trainer_class

            maxent = MaxEnt(
                tau=float(conf["maxent_tau"]),
                q_temperature=float(conf["maxent_q_temperature"]),
                q_epsilon=float(conf["maxent_q_epsilon"]),
                length_normalize_ref=bool(conf["maxent_length_normalize_ref"]),
            )
            trainer_class, extra = make_trainer_class(), {"maxent": maxent}
        else:
            from trl import GRPOTrainer

            trainer_class, extra = GRPOTrainer, {}
        trainer = trainer_class(**common, reward_funcs=built.extras["funcs"], **extra)
        samples = built.extras["samples"]
        samples.trainer = trainer
        trainer.add_callback(samples)
        if conf.get("kl_target"):
            from rlctl.train.callbacks import AdaptiveKL

            kl = AdaptiveKL(trainer, run, float(conf["kl_target"]), float(conf["kl_horizon"]))
            trainer.add_callback(kl)
            state.parts["adaptive_kl"] = kl  # its β goes into every checkpoint
        return trainer


RECIPE = GRPORecipe()
