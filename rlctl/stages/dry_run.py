"""`--dry-run` on every stage: everything a run would check before its model loads, and nothing
recorded. The config is resolved and checked as the run does it; the input records are read
and validated (a pipe's too); a local model's files are checked (headers only); an endpoint
is asked which models it serves. The stage's own preparation runs through a `DryRun`, which
writes nothing to the store, so the checks are the real run's, not a copy of them.

The resolved config is printed on stdout as YAML that `-c` takes back (save it with `>`); the
findings go to stderr. A dry run emits no records, so it belongs at the end of a pipe.
Anything that would fail the run fails the dry run the same way, with the same one line.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rlctl.errors import BadInput, RlctlError
from rlctl.store import Store
from rlctl.store.redact import redact_value
from rlctl.store.run import DryRun

Findings = list[tuple[str, str]]


def records(
    store: Store,
    run: DryRun,
    inputs: tuple[str, ...] | list[str],
    kind: str,
    *,
    via: str | None = None,
    validate: bool = True,
) -> tuple[str, str]:
    """Every input record read and checked, as the run would read it; (what, how many)."""
    from rlctl.stages.streams import open_inputs

    reader = open_inputs(store, run, inputs, kind, validate=validate, via=via)
    n = sum(1 for _ in reader)
    where = ", ".join(inputs) if inputs else "stdin"
    checked = "valid " if validate else ""
    return (via or "input", f"{n} {checked}{kind} records from {where}")


def model(path: str, option: str = "--model") -> tuple[str, str]:
    """A local model's folder and weight headers checked; a hub id is named, not fetched."""
    from rlctl.models import require_model_path

    require_model_path(path, option)
    local = Path(path).expanduser()
    if not local.is_dir():
        return (option, f"{path}: a hub id (not fetched in a dry run)")
    try:
        arch = json.loads((local / "config.json").read_text()).get("model_type", "?")
    except (OSError, ValueError):
        raise BadInput(f"{option} {path}: no readable config.json (not a model folder)") from None
    weights = [*local.glob("*.safetensors"), *local.glob("*.bin")]
    size = sum(f.stat().st_size for f in weights)
    files = f"{len(weights)} weight file{'s' if len(weights) != 1 else ''}"
    return (option, f"{path}: {arch}, {files}, {size / 1e6:.1f} MB, headers intact")


def endpoint(conf: Mapping[str, Any], served: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """The OpenAI-compatible server asked for its models (`/models`): down, or not serving
    the model the run names, fails here as the run would fail on its first request."""
    url = str(conf["base_url"]).rstrip("/")
    req = urllib.request.Request(f"{url}/models")
    key = os.environ.get("OPENAI_API_KEY")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            ids = [m.get("id") for m in json.loads(resp.read()).get("data") or []]
    except urllib.error.HTTPError as e:
        return ("endpoint", f"{url}: reachable (GET /models answered {e.code})")
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise RlctlError(
            f"endpoint {url}: not reachable ({reason}); start it (rlctl serve vllm) or fix "
            "--base-url/--endpoint"
        ) from None
    name = conf.get("model")
    if name and ids and name not in ids:
        raise BadInput(f"endpoint {url} serves {', '.join(map(str, ids))}, not --model {name}")
    via = f" (serve run {served['run_id']})" if served and served.get("run_id") else ""
    return ("endpoint", f"{url}{via}: up, serves {', '.join(map(str, ids)) or 'no models'}")


def generator(conf: Mapping[str, Any], served: Mapping[str, Any] | None) -> tuple[str, str]:
    """The model a generating stage runs: through its endpoint, or from its files."""
    if conf.get("backend") == "openai":
        return endpoint(conf, served)
    return model(str(conf["model"]))


def report(command: str, conf: Mapping[str, Any], keys: Mapping[str, Any], found: Findings) -> None:
    """The resolved config (the keys `-c` takes) as YAML, then the findings."""
    import yaml

    from rlctl.stages.streams import _records_stream

    shown = redact_value({k: v for k, v in conf.items() if k in keys})
    text = yaml.safe_dump(shown, sort_keys=False, default_flow_style=False, allow_unicode=True)
    out = _records_stream()  # the real stdout, also when a library's prints were moved off it
    out.write(text.encode())
    out.flush()
    lines = [f"dry run of '{command}': checked, nothing recorded"]
    lines += [f"  {what}: {finding}" for what, finding in found]
    sys.stderr.write("\n".join(lines) + "\n")
