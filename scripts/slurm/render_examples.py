"""Render configs/slurm/pipelines/*.yaml into scripts/slurm/*.sbatch: plain sbatch scripts to
read, or to submit with `sbatch` directly (cluster flags such as --partition override the
#SBATCH lines). A test keeps them current: run this after changing a template or pipeline."""

from __future__ import annotations

import sys
from pathlib import Path

from rlctl.slurm.render import load_spec, render

ROOT = Path(__file__).resolve().parents[2]


def rendered() -> dict[Path, str]:
    out = {}
    for pipeline in sorted((ROOT / "configs" / "slurm" / "pipelines").glob("*.yaml")):
        out[ROOT / "scripts" / "slurm" / f"{pipeline.stem}.sbatch"] = render(
            load_spec(pipeline), None
        )
    return out


if __name__ == "__main__":
    for path, text in rendered().items():
        path.write_text(text)
        print(path.relative_to(ROOT), file=sys.stderr)
