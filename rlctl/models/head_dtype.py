"""An fp32 LM head for an engine rlctl does not start itself.

vLLM reads `head_dtype` off the model's HF config (`hf_overrides` only sets the same
attribute), so a model directory whose config.json says `"head_dtype": "float32"` gives an fp32
head to any vLLM that loads it: TRL's colocated engine, which takes no `hf_overrides`, included.
The directory is a view: config.json patched, every other file a link to the original.
"""

from __future__ import annotations

import json
from pathlib import Path

from rlctl.errors import BadInput
from rlctl.models.paths import require_model_path


def local_model_dir(model: str) -> Path:
    """The directory a model reference loads from: a local path, or a hub id's snapshot in
    the local Hugging Face cache (never a download)."""
    require_model_path(model)
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, local_files_only=True))
    except (OSError, ValueError) as e:  # not cached, or not a valid hub id
        raise BadInput(
            f"--model {model}: not in the local Hugging Face cache; download it first "
            "(huggingface-cli download MODEL) or pass a local path"
        ) from e


def with_fp32_head(model: str, out: Path) -> Path:
    """`out`: `model` with `head_dtype: float32` in its config.json, the weights linked."""
    src = local_model_dir(model)
    config = src / "config.json"
    if not config.is_file():
        raise BadInput(f"--model {model}: no config.json in {src}")
    out.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.name != "config.json" and not (out / item.name).exists():
            (out / item.name).symlink_to(item.resolve())
    patched = json.loads(config.read_text()) | {"head_dtype": "float32"}
    (out / "config.json").write_text(json.dumps(patched, indent=2) + "\n")
    return out
