"""`rlctl rollout`: prompt records in, n rollout records per prompt out, in chunks so that
memory stays flat and the next stage starts before the last prompt is generated."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rlctl.backends.generation import BACKENDS, Backend, Prompt, Sampling
from rlctl.backends.generation.options import flat_options, section_options
from rlctl.errors import BadInput
from rlctl.options import ENDPOINT, Option, defaults, precision
from rlctl.store import Run, Store

OPTIONS: dict[str, Option] = {
    "model": Option(None, "Local path or hub id (openai: the served model name)"),
    "backend": Option("hf", "Generation engine", choices=BACKENDS),
    "num_samples": Option(1, "Completions per prompt", int, ("-n", "--num-samples"), min=1),
    "limit": Option(None, "Use only the first N prompts", int, min=0),
    "temperature": Option(1.0, "Sampling temperature; 0 is greedy", float, min=0),
    "top_p": Option(1.0, "Nucleus sampling", float, min=0, max=1, min_open=True),
    "top_k": Option(-1, "Top-k sampling, -1 off", int),
    "max_tokens": Option(256, "Tokens to generate at most", int, min=1),
    "stop": Option([], "Stop string (repeatable)", list),
    # None: local engines seed with 0 (reproducible by default); an OpenAI server gets no
    # per-request seed unless asked, because seeded requests crash vLLM's CPU build under
    # chunked prefill ("CPU Generator does not use offset", cf. RBLN-SW/vllm-rbln#1025).
    "seed": Option(None, "Sampling seed", int, shown_default="hf/vllm: 0; openai: none sent"),
    "chat_template": Option(
        True, "Render messages with the chat template", bool, negatable=True, shown_default="on"
    ),
    "system_prompt": Option(None, "System message prepended to chats that have none"),
    "chat_template_file": Option(
        None,
        "hf/vllm: render chats with this Jinja template instead of the model's",
        metavar="FILE",
    ),
    "logprobs": Option(False, "Record token ids and sampled-token logprobs", bool),
    **precision("hf/vllm", "auto"),
    **ENDPOINT,
    # each backend's own options: flat flags, and its section (`vllm.max_model_len`)
    **flat_options(),
    **section_options(),
}
DEFAULTS = defaults(OPTIONS)


def sampling_of(conf: dict[str, Any]) -> Sampling:
    return Sampling(
        n=int(conf["num_samples"]),
        temperature=float(conf["temperature"]),
        top_p=float(conf["top_p"]),
        top_k=int(conf["top_k"]),
        max_tokens=int(conf["max_tokens"]),
        stop=tuple(conf["stop"] or ()),
        seed=conf["seed"],
        logprobs=bool(conf["logprobs"]),
    )


def rollouts(
    prompts: Iterable[dict[str, Any]],
    backend: Backend,
    sampling: Sampling,
    *,
    chat_template: bool = True,
    system_prompt: str | None = None,
    template: str | None = None,
    chunk: int = 64,
    generator: dict[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """`generator` (what the engine really ran: dtype, head) goes into every record, so a
    rollout file read on its own still says how it was generated."""
    it = iter(prompts)
    settings = sampling.record()
    while batch := list(itertools.islice(it, chunk)):
        ps = [Prompt.of(r, chat_template, system_prompt, template) for r in batch]
        for rec, gens in zip(batch, backend.generate(ps, sampling), strict=True):
            base = {k: v for k, v in rec.items() if k != "run_id"}
            for k, g in enumerate(gens):
                out = {
                    **base,
                    "completion": g.text,
                    "sample": k,
                    "model": backend.model,
                    "backend": backend.name,
                    "finish_reason": g.finish_reason,
                    "sampling": settings,
                }
                if generator is not None:
                    out["generator"] = generator
                if sampling.logprobs:
                    out["prompt_token_ids"] = g.prompt_token_ids
                    out["completion_token_ids"] = g.token_ids
                    out["completion_logprobs"] = g.logprobs
                yield out


def check_conf(store: Store, conf: dict[str, Any]) -> dict | None:
    """What can be wrong before a run exists: the model or endpoint, -n, --max-tokens, the
    sampling settings. Each backend's section is resolved in `conf`, and an option set for
    a backend that is not running is said on stderr. Returns the `serve` endpoint an openai
    backend reaches."""
    from rlctl.backends.generation.options import fill_sections, unused
    from rlctl.stages.engines import resolve_endpoint, say_unread
    from rlctl.stages.streams import guard_stdout

    fill_sections(conf, DEFAULTS)
    say_unread(conf["backend"], unused(conf))
    endpoint = None
    if conf["backend"] == "openai":
        endpoint = resolve_endpoint(store, conf)
    elif not conf["model"]:
        raise BadInput(f"--backend {conf['backend']} needs --model PATH")
    check_template(conf)
    if conf["num_samples"] < 1 or conf["max_tokens"] < 1:
        raise BadInput("-n and --max-tokens must be at least 1")
    sampling_of(conf)
    if conf["backend"] == "vllm":
        guard_stdout()  # vLLM's engine logs to stdout; ours carries records only
    return endpoint


def check_template(conf: dict[str, Any]) -> None:
    """`--chat-template-file`: readable, valid, and where it can apply (a local engine renders
    the chat; an OpenAI server renders with the template it was started with)."""
    from rlctl.backends.generation import read_chat_template

    path = conf.get("chat_template_file")
    if not path:
        return
    if not conf.get("chat_template", True):
        raise BadInput("--chat-template-file and --no-chat-template exclude each other")
    if conf.get("backend") == "openai":
        raise BadInput(
            "--chat-template-file: an OpenAI-compatible server renders chats with its own "
            "template; start it with 'rlctl serve vllm --model M --chat-template FILE' (vLLM's "
            "flag), or generate locally with --backend hf|vllm"
        )
    read_chat_template(path)


def use_template(run: Run, conf: dict[str, Any]) -> str | None:
    """The template file's text, recorded as an input (by content, so `runs diff` shows a
    changed template)."""
    from rlctl.backends.generation import read_chat_template

    path = conf.get("chat_template_file")
    if not path:
        return None
    run.add_input(str(Path(path).absolute()), via="chat_template")
    return read_chat_template(path)


def rollout_run(
    run: Run,
    store: Store,
    conf: dict[str, Any],
    inputs: tuple[str, ...] | list[str],
    endpoint: dict | None = None,
    output: str | None = None,
) -> int:
    """`rlctl rollout` inside its run: prompts in, rollouts stored and streamed, the engine
    that really ran recorded. Returns the records written."""
    from rlctl.backends.generation import make_backend
    from rlctl.backends.generation.options import backend_options
    from rlctl.stages.engines import link_model, record_engine
    from rlctl.stages.streams import emit, open_inputs, progress

    reader = open_inputs(store, run, inputs, "prompt")
    link_model(run, conf, endpoint)
    prompts = itertools.islice(reader, conf["limit"]) if conf["limit"] is not None else reader
    backend = make_backend(conf["backend"], backend_options(conf), endpoint)
    try:
        run.info["config"]["model"] = backend.model
        engine = record_engine(run, backend.engine)
        records = rollouts(
            prompts,
            backend,
            sampling_of(conf),
            chat_template=bool(conf["chat_template"]),
            system_prompt=conf["system_prompt"],
            template=use_template(run, conf),
            chunk=backend.chunk,
            generator=engine,
        )
        n = emit(run, progress(records, "generating"), "rollout", name="rollouts", output=output)
        run.metric("records", n)
    finally:
        backend.close()
    return n
