"""The model a stage runs, as the run records it: the `serve` endpoint it reached, the
engine's real dtype, and the lineage to the model or server."""

from __future__ import annotations

import logging
from typing import Any

from rlctl.errors import BadInput
from rlctl.store import Run, Store

log = logging.getLogger("rlctl")


def resolve_endpoint(store: Store, conf: dict[str, Any]) -> dict[str, Any] | None:
    """`--endpoint latest|RUN` (a `serve vllm` run) or `--base-url` for an OpenAI backend; the
    served model's name fills in `--model` when not given. Returns the endpoint a `serve`
    run registered (what it serves, in which dtype), or None for a foreign `--base-url`."""
    from rlctl.store.refs import find_endpoint

    endpoint = None
    if conf.get("endpoint"):
        endpoint = find_endpoint(store, conf["endpoint"])
        conf["base_url"] = endpoint["url"]
        conf["model"] = conf["model"] or endpoint["model"]
    if not conf.get("base_url"):
        raise BadInput("--backend openai needs --base-url URL or --endpoint latest")
    return endpoint


def say_unread(backend: str, options: list[str]) -> None:
    """One stderr line for the options set for another engine than `backend`: they change
    nothing, and the user who set them should know."""
    if options:
        log.warning(
            "--backend %s does not read %s (set for another backend); ignored",
            backend,
            ", ".join(options),
        )


def record_engine(run: Run, engine: dict[str, Any]) -> dict[str, Any]:
    """What the generator really ran, in run.json (`generator`). Through an OpenAI endpoint the
    client's own `dtype`/`fp32_lm_head` settings do not apply, so the config records the
    server's instead of the client's defaults. A dtype nobody chose is said on stderr."""
    run.info["generator"] = engine
    if engine["engine"] not in ("transformers", "vllm"):  # a server: client settings moot
        run.info["config"].update(dtype=engine["dtype"], fp32_lm_head=engine["fp32_lm_head"])
    run.save()
    saved = engine.get("checkpoint_dtype")
    if engine["dtype_chosen_by"] == "engine default" and engine["dtype"] != saved:
        log.warning(
            "the generator runs in %s, its engine's choice (no --dtype given), while the "
            "checkpoint is %s; recorded in the run and every record",
            engine["dtype"],
            saved or "of unknown dtype",
        )
    elif engine["dtype_chosen_by"] == "unknown":
        log.warning("generator dtype unknown: %s", engine.get("note") or "not reported")
    return engine


def link_model(run: Run, conf: dict[str, Any], endpoint: dict[str, Any] | None) -> None:
    """Lineage to the model a command runs: the `serve` run behind an endpoint (which links
    its own model), or the model path itself (store.models: by run, else by content)."""
    if endpoint is not None:
        run.add_input(endpoint["url"], endpoint.get("run_id"), via="endpoint")
    elif conf.get("backend") != "openai" and conf.get("model"):
        run.add_model(str(conf["model"]))
