"""TRL/transformers callbacks that write into the store."""

from __future__ import annotations

import logging
import signal
from numbers import Number
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import orjson
from transformers import TrainerCallback

from rlctl.backends.judges.base import completion_text
from rlctl.errors import RunInterrupted
from rlctl.files import atomic_write_json
from rlctl.records import RecordWriter
from rlctl.store import Run
from rlctl.train.ranks import RankView

log = logging.getLogger("rlctl")
STATE_FILE = "rlctl_state.json"


class StoreMetrics(TrainerCallback):
    """Every logged scalar becomes a metric event (step, name, value) of the run, so
    `rlctl runs tail RUN -f` and `SELECT ... FROM metrics` follow training live."""

    def __init__(self, run: Run | RankView) -> None:
        self.run = run

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any
    ) -> None:
        for name, value in (logs or {}).items():
            if isinstance(value, Number) and not isinstance(value, bool):
                self.run.metric(name, float(value), step=state.global_step)


class SampleLog(TrainerCallback):
    """Every `every`-th step, what the model was saying: the prompts, completions and
    per-judge rewards of the step's generation, as `train_sample` records with `reward` the
    weighted sum TRL optimises. They come from TRL's own log of the generation (what its
    `log_completions` prints), which TRL already gathers from every process, so rank 0 writes
    the whole batch and rlctl adds no collective of its own. Each record carries the prompt
    record's `id` and `reference` (logged by the first reward function through TRL's
    `log_extra`, see `train.grpo.with_row_columns`) and the run's `run_id`, so samples join
    their prompts and their run."""

    def __init__(
        self,
        writer: RecordWriter | None,
        every: int,
        names: list[str],
        weights: list[float],
        run_id: str = "",
    ) -> None:
        self.writer = writer  # a run artifact (published when the run ends); None off rank 0
        self.run_id = run_id
        self.every = max(1, every)
        self.names, self.weights = names, weights
        self.trainer: Any = None
        self._written: Any = None  # the last completion written (held: its id stays unique)

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any
    ) -> None:
        step = state.global_step
        if self.writer is None or not (step % self.every == 0 or step == 1):
            return
        if any(k.startswith("eval_") for k in logs or {}):
            return  # a held-out evaluation (--eval-input): its figures are metrics, not samples
        logs = self.trainer._logs
        if not logs["completion"] or logs["completion"][-1] is self._written:
            return  # nothing generated yet, or a generation shared by several steps
        self._written = logs["completion"][-1]
        columns = [list(logs["rewards"][n]) for n in self.trainer.reward_func_names]
        extra = {k: list(v) for k, v in logs["extra"].items()}
        for i, (prompt, completion) in enumerate(
            zip(logs["prompt"], logs["completion"], strict=True)
        ):
            rewards = {
                name: None if col[i] != col[i] else col[i]  # NaN: the judge abstained
                for name, col in zip(self.names, columns, strict=True)
            }
            decided = [
                w * rewards[n]
                for n, w in zip(self.names, self.weights, strict=True)
                if rewards[n] is not None
            ]
            self.writer.write(
                {
                    "id": extra.get("id", [None] * (i + 1))[i],
                    "step": step,
                    "prompt": prompt,
                    "reference": extra.get("reference", [None] * (i + 1))[i],
                    "completion": completion_text(completion),
                    "rewards": rewards,
                    "reward": sum(decided) if decided else None,
                    "advantage": logs["advantages"][i],
                    "run_id": self.run_id,
                }
            )
        self.writer.flush()

    def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        """TRL appends a held-out evaluation's completions to the same log as training's: drop
        them once the evaluation is over, so the next step's samples are its own."""
        for value in self.trainer._logs.values():
            for log_ in value.values() if isinstance(value, dict) else [value]:
                log_.clear()


class AdaptiveKL(TrainerCallback):
    """Ziegler et al.'s adaptive KL controller, as GRPO recipes use it: after each logged
    step, β ← β · (1 + clip(KL / target − 1, −0.2, 0.2) · n / horizon), n = samples in the
    step. It adjusts the trainer's own `beta` (which TRL reads in every loss), never to 0."""

    def __init__(self, trainer: Any, run: Run | RankView, target: float, horizon: float) -> None:
        self.trainer, self.run = trainer, run
        self.target, self.horizon = target, horizon

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any
    ) -> None:
        kl = (logs or {}).get("kl")
        if kl is None or self.trainer.beta == 0.0:
            return
        n = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        error = min(max(float(kl) / self.target - 1.0, -0.2), 0.2)
        self.trainer.beta = max(self.trainer.beta * (1.0 + error * n / self.horizon), 1e-8)
        self.run.metric("kl_coef", self.trainer.beta, step=state.global_step)

    def state_dict(self) -> dict[str, Any]:
        return {"beta": self.trainer.beta}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trainer.beta = float(state["beta"])


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class CheckpointState(TrainerCallback):
    """State rlctl adds to training (β-DPO's running M0/σ and sampler, the adaptive-KL β)
    saved into every checkpoint TRL writes, as `rlctl_state.json` beside TRL's own
    trainer_state.json, and restored by `--resume`: without it a resumed run starts those
    from scratch and is not the run that was interrupted."""

    def __init__(self, parts: dict[str, Stateful]) -> None:
        self.parts = parts

    def save_to(self, checkpoint: Path) -> None:
        """Written by rename after TRL's own files: its presence also marks the checkpoint
        complete (`checkpoint_complete`)."""
        if checkpoint.is_dir():
            atomic_write_json(
                checkpoint / STATE_FILE, {k: p.state_dict() for k, p in self.parts.items()}
            )

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.is_world_process_zero:
            self.save_to(Path(args.output_dir) / f"checkpoint-{state.global_step}")

    def restore(self, checkpoint: str | None) -> None:
        if not checkpoint or not self.parts:
            return
        path = Path(checkpoint) / STATE_FILE
        if not path.exists():
            log.warning(
                "%s has no %s (an older rlctl wrote it): %s start fresh",
                checkpoint,
                STATE_FILE,
                ", ".join(self.parts),
            )
            return
        saved = orjson.loads(path.read_bytes())
        for name, part in self.parts.items():
            if name in saved:
                part.load_state_dict(saved[name])


class StopOnSignal(TrainerCallback):
    """SIGINT, SIGTERM or SIGHUP while training: the step in flight finishes, the trainer
    saves a full checkpoint (optimizer, scheduler, RNG, data position) the normal way, and
    training stops; a second signal stops at once. Stopping at a step boundary is what makes
    this safe with several processes: a rank interrupted inside a collective would leave the
    others waiting, and FSDP and ZeRO save collectively. So every rank learns at each step end
    whether any rank was signalled (one tiny all-reduce), and they all stop together."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.code = 0

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """The handler while training (`signals_trapped(stop.on_signal)`)."""
        name = signal.Signals(signum).name
        if self.reason is not None:
            raise RunInterrupted(name, 128 + signum)
        self.reason, self.code = name, 128 + signum
        log.warning("%s: saving a checkpoint after this step (send it again to stop now)", name)

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        stop = self.reason is not None
        if args.world_size > 1:
            import torch
            import torch.distributed as dist

            flag = torch.tensor([int(stop)], device=args.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        if stop:
            if self.reason is None:
                self.reason, self.code = "a signal to another rank", 130
            control.should_save = True
            control.should_training_stop = True


def checkpoint_complete(checkpoint: Path) -> bool:
    """rlctl writes `rlctl_state.json` (by rename) only after TRL has saved everything else, so
    its presence means the save finished. A checkpoint from before rlctl wrote one counts as
    complete when TRL's trainer state, written last by TRL, parses and names its step."""
    if (checkpoint / STATE_FILE).is_file():
        return True
    try:
        state = orjson.loads((checkpoint / "trainer_state.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return False
    return (
        isinstance(state, dict) and str(state.get("global_step")) == checkpoint.name.split("-")[-1]
    )
