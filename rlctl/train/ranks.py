"""One run per distributed job.

Under `accelerate launch` or `torchrun` every process runs `rlctl train`. Left alone, each would
record its own run, read stdin (which they share, so each would get a random part of it) and
save its checkpoint shards into its own folder, which FSDP and ZeRO-3 cannot load. So rank 0
alone records the run, reads the inputs and checks everything; it hands the other ranks a `Job`
(the run id, the rows, the resolved trainer section), and they train into that run's folders
through a `RankView`, which writes nothing to the store.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlctl.store import Store


@dataclass
class Job:
    """What every rank needs from rank 0; plain data, so it can be broadcast."""

    run_id: str
    rows: list[dict[str, Any]]
    section: dict[str, Any]  # the trainer section as resolved (vLLM keys, fp32 head, β)
    resume: str | None  # the checkpoint `--resume` found
    vllm_model: str | None = None  # colocate + fp32 head: the model view vLLM loads
    eval_rows: list[dict[str, Any]] | None = None  # --eval-input: held-out rows, same shape


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, kind: str, section: dict[str, Any]) -> Ranks:
        """This process's place in the job. In a distributed job the process group is set up
        here by transformers itself, from the user's trainer section, exactly as the trainer
        would (backend, `ddp_timeout`, DeepSpeed), so that rank 0 can talk to the others
        before any model is loaded."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        import torch.distributed as dist

        from rlctl.train.config import trl_config

        scratch = Path(tempfile.gettempdir()) / "rlctl-ranks"
        _ = trl_config(kind, section, scratch).device  # initialises the process group
        return cls(dist.get_rank(), dist.get_world_size())

    def share(self, job: Job | int | None = None) -> Job | int:
        """Rank 0 passes the job, or the exit code it failed with; every rank gets it back."""
        if self.world == 1:
            assert job is not None
            return job
        import torch.distributed as dist

        box = [job if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def leave() -> None:
    """The job's end, on every rank together (after the last step, or a stop at a step end):
    wait for each other, then tear the process group down. A rank that simply exits can make
    another, still closing its connections, abort (seen once as SIGABRT under torchrun)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


class RankView:
    """The run rank 0 records, as another rank sees it: the same id and folders, so every rank
    saves into the same checkpoint; metrics, inputs and artifacts are rank 0's to write."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.artifact_dir = store.artifacts_dir / run_id

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        return None

    def add_input(self, path: str | Path, run_id: str | None = None, via: str = "file") -> None:
        return None

    def add_model(self, model: str | Path, via: str = "model") -> None:
        return None

    def register_path(self, name: str, kind: str, path: str | Path, fmt: str = "dir") -> None:
        return None
