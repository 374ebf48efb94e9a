"""A pipeline file + cluster settings -> one sbatch script.

The scripts' shapes (a pipeline of stages, vLLM + GRPO on one node, an eval array over
checkpoints, multi-node accelerate) live in templates; everything that differs between clusters
(account, partition, GPUs, time, modules, environment) comes from a cluster config or flags, so
nobody edits a script to move it to another cluster.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from rlctl import config as cfg
from rlctl.errors import BadInput

TEMPLATES_DIR = Path(__file__).parent / "templates"

CLUSTER_DEFAULTS: dict[str, Any] = {
    "partition": None,
    "account": None,
    "qos": None,
    "constraint": None,
    "nodes": 1,
    "gpus_per_node": 0,
    "cpus_per_task": 2,
    "mem": None,
    "time": "01:00:00",
    "modules": [],  # `module load` each
    "setup": [],  # shell lines before the stages (conda activate, ...)
    "env": {},  # exported variables
    "venv": "auto",  # auto: activate the environment rlctl was submitted from; null: none
    "workdir": None,  # default: the submit directory (where `rlctl slurm submit` ran)
    "output": None,  # default: STORE/slurm/%x-%j.out (%A_%a for arrays)
    "sbatch": [],  # extra #SBATCH lines, e.g. "--exclusive"
    "save_before_end": 300,  # seconds: SIGTERM the stages this long before the time limit
}

# Per template: its variables and their defaults (None: required).
TEMPLATES: dict[str, dict[str, Any]] = {
    "pipeline": {"steps": None, "vars": {}},  # steps may use {{ var }} from vars
    "eval-array": {"checkpoints": None, "task": None, "eval_args": ""},
    "grpo-vllm": {
        "model": None,
        "config": None,
        "vllm_gpus": 1,
        "vllm_port": 8000,
        "vllm_serve": "rlctl serve vllm --weight-sync",  # what GRPO's server mode syncs to
        "vllm_args": "",  # e.g. --fp32-lm-head --gpu-memory-utilization 0.9
        "health_timeout": 900,
        "accelerate_config": "configs/accelerate/zero2.yaml",
        "train_args": "",
    },
    "multinode-train": {
        "train": None,
        "accelerate_config": "configs/accelerate/fsdp.yaml",
        "main_port": 29500,
    },
}
TOP_KEYS = {"name", "template", "cluster"}


def load_spec(
    pipeline: str | Path,
    cluster_file: str | Path | None = None,
    sets: dict[str, Any] | None = None,
    flags: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Resolved spec: flags > --set > the pipeline file > its cluster file > defaults.
    `--cluster FILE` takes the place of a cluster file the pipeline names."""
    doc = cfg.load_file(pipeline)
    cluster = doc.get("cluster") or {}
    if isinstance(cluster, str):  # a file, found next to the pipeline first
        cluster = cfg.load_file(cluster_file or _relative(cluster, pipeline))
    elif cluster_file:
        cluster = cfg.merge(cfg.load_file(cluster_file), cluster)
    if not isinstance(cluster, dict):
        raise BadInput(f"{pipeline}: 'cluster' must be a mapping or a file name")
    doc = cfg.merge({**doc, "cluster": cluster}, sets or {})
    template = doc.get("template", "pipeline")
    if template not in TEMPLATES:
        raise BadInput(f"{pipeline}: template {template!r}: use one of {', '.join(TEMPLATES)}")
    known = TOP_KEYS | set(TEMPLATES[template])
    cfg.check_keys(doc, dict.fromkeys(known), where=str(pipeline))
    cfg.check_keys(doc["cluster"], CLUSTER_DEFAULTS, where=f"{pipeline}: cluster")
    cluster = cfg.merge(CLUSTER_DEFAULTS, doc["cluster"])
    cluster.update({k: v for k, v in (flags or {}).items() if v is not None})
    spec = {k: v for k, v in TEMPLATES[template].items()}
    spec.update({k: v for k, v in doc.items() if k in TEMPLATES[template]})
    missing = [k for k, v in spec.items() if v is None]
    if missing:
        raise BadInput(f"{pipeline}: template {template} needs {', '.join(missing)}")
    name = str(doc.get("name") or Path(pipeline).stem)
    return {"name": name, "template": template, "cluster": cluster, **spec}


def _relative(path: str | Path, pipeline: str | Path) -> Path:
    """A cluster file named in a pipeline is found next to the pipeline first."""
    p = Path(path)
    beside = Path(pipeline).parent / p
    return beside if not p.is_absolute() and beside.exists() else p


def render(spec: dict[str, Any], store: Path | None) -> str:
    """The sbatch script. `store=None` renders a portable script (the examples in
    scripts/slurm/): the store is `$RLCTL_STORE` or `.rlctl` in the submit directory, and the
    environment is whatever `setup` activates."""
    import jinja2

    c = spec["cluster"]
    checks = {"steps": list, "checkpoints": list}
    for key, typ in checks.items():
        if key in spec and (not isinstance(spec[key], typ) or not spec[key]):
            raise BadInput(f"pipeline: '{key}' must be a non-empty list")
    for key in ("modules", "setup", "sbatch"):
        if not isinstance(c[key], list):
            raise BadInput(f"cluster: '{key}' must be a list")
    if not isinstance(c["env"], dict):
        raise BadInput("cluster: 'env' must be a mapping of NAME: value")
    array = f"0-{len(spec['checkpoints']) - 1}" if spec["template"] == "eval-array" else None
    default_out = "%x-%A_%a.out" if array else "%x-%j.out"
    venv = c["venv"]
    if venv == "auto" and store is None:
        venv = None
    elif venv == "auto":
        activate = Path(sys.prefix) / "bin" / "activate"
        venv = str(activate) if sys.prefix != sys.base_prefix and activate.exists() else None
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["q"] = lambda v: shlex.quote(str(v))
    variables = {k: v for k, v in spec.items() if k not in ("cluster", "vars")}
    if "steps" in spec:
        if not isinstance(spec["vars"], dict):
            raise BadInput("pipeline: 'vars' must be a mapping of name: value")
        try:
            variables["steps"] = [
                env.from_string(str(step)).render(**spec["vars"]) for step in spec["steps"]
            ]
        except jinja2.UndefinedError as e:
            raise BadInput(f"pipeline: a step uses {e.message}; define it under vars:") from e
    text = env.get_template(f"{spec['template']}.sbatch.j2").render(
        **variables,
        c=c,
        array=array,
        venv=venv,
        store=str(store) if store else None,
        output=c["output"] or (str(store / "slurm" / default_out) if store else default_out),
        rlctl="rlctl",
    )
    return "\n".join(line.rstrip() for line in text.splitlines()).strip() + "\n"
