"""`rlctl serve vllm`: vLLM's OpenAI server as a supervised child process.

The child gets its own session, so shutdown reaches vLLM's engine processes too (SIGTERM to
the whole group, SIGKILL after a grace period): no orphan holds a GPU after the run ends.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import psutil

from rlctl.errors import BadInput, RlctlError

if TYPE_CHECKING:
    from rlctl.store import Run

log = logging.getLogger("rlctl")

VLLM_PYTHON_ENV = "RLCTL_VLLM_PYTHON"


def vllm_python(explicit: str | None) -> str:
    """--python, else $RLCTL_VLLM_PYTHON, else ./.venv-vllm (what `make vllm-env` builds),
    else this interpreter when it has vLLM."""
    import importlib.util
    import sys

    for candidate in (explicit, os.environ.get(VLLM_PYTHON_ENV)):
        if candidate:
            if not Path(candidate).exists():
                raise BadInput(f"vLLM python {candidate}: no such file")
            return candidate
    local = Path(".venv-vllm/bin/python")
    if local.exists():
        return str(local.absolute())
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    raise BadInput(
        f"no vLLM found: pass --python PATH or set {VLLM_PYTHON_ENV} "
        "('make vllm-env' creates .venv-vllm)"
    )


def free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def serve_dry_run(server: VLLMServer) -> list[tuple[str, str]]:
    """`serve vllm --dry-run`: the model's files, vLLM in the chosen Python (found, not
    imported: that takes seconds) and the port checked; the command line it would run."""
    import shlex
    import socket

    from rlctl.stages import dry_run

    found = [dry_run.model(server.model)]
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
    if subprocess.run([server.python, "-c", probe], capture_output=True).returncode != 0:
        raise BadInput(f"vLLM python {server.python}: vllm is not installed there")
    found.append(("python", f"{server.python} (vllm installed)"))
    with socket.socket() as s:
        try:
            s.bind((server.host, server.port))
        except OSError as e:
            raise BadInput(
                f"--port {server.port} on {server.host}: {e.strerror}; pick another, or 0"
            ) from None
    found.append(("port", f"{server.host}:{server.port} free"))
    found.append(("command", shlex.join(server.command())))
    return found


WEIGHT_TRANSFER = '{"backend": "nccl"}'


@dataclass
class VLLMServer:
    model: str
    python: str
    host: str = "127.0.0.1"
    port: int = 8000
    dtype: str | None = None
    max_model_len: int | None = None
    tensor_parallel_size: int | None = None
    gpu_memory_utilization: float | None = None
    served_model_name: str | None = None
    fp32_lm_head: bool = False
    weight_sync: bool = False
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def name(self) -> str:
        return self.served_model_name or self.model

    def command(self) -> list[str]:
        cmd = [self.python, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model]
        cmd += ["--host", self.host, "--port", str(self.port)]
        # Logprobs after temperature: the quantity a trainer recomputes (compare-logprobs).
        cmd += ["--logprobs-mode", "processed_logprobs"]
        optional = {
            "--dtype": self.dtype,
            "--max-model-len": self.max_model_len,
            "--tensor-parallel-size": self.tensor_parallel_size,
            "--gpu-memory-utilization": self.gpu_memory_utilization,
            "--served-model-name": self.served_model_name,
        }
        for flag, value in optional.items():
            if value is not None:
                cmd += [flag, str(value)]
        if self.fp32_lm_head:
            cmd += ["--hf-overrides", '{"head_dtype": "float32"}']
        if self.weight_sync:
            # What TRL's GRPO server mode talks to (`trl vllm-serve` runs exactly this since
            # vLLM 0.30): the weight-transfer endpoints, and every logprob on request.
            cmd += ["--enable-scale-out", "--weight-transfer-config", WEIGHT_TRANSFER]
            cmd += ["--max-logprobs", "-1"]
        return cmd + self.extra

    def start(self, log_path: Path) -> None:
        env = dict(os.environ)
        if self.weight_sync:
            env["VLLM_SERVER_DEV_MODE"] = "1"  # serves the weight-update routes
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; only read by the CPU build
        log = open(log_path, "ab")  # noqa: SIM115 (the child owns it; closed when we stop)
        self.proc = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        log.close()

    def wait_healthy(self, timeout: float, log_path: Path) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RlctlError(
                    f"vLLM exited with status {self.proc.returncode} before it was healthy: "
                    f"{_last_error(log_path)} (log: {log_path})"
                )
            try:
                with urllib.request.urlopen(
                    f"http://{self.host}:{self.port}/health", timeout=2
                ) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(1.0)
        raise RlctlError(f"vLLM not healthy after {timeout:.0f} s (log: {log_path})")

    def processes(self) -> list[psutil.Process]:
        """The server and everything it started (engine cores, workers)."""
        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, grace: float = 30.0) -> None:
        if self.proc is None:
            return
        tree = self.processes()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        _, alive = psutil.wait_procs(tree, timeout=5)
        for p in alive:  # anything that left the group
            with contextlib.suppress(psutil.Error):
                p.kill()

    def endpoint(self, run_id: str, log_path: Path | None = None) -> dict[str, Any]:
        """What clients of this server need, and what it really runs: `dtype` is what was
        asked for (None: vLLM's own choice), `engine_dtype` what vLLM's engine reports in its
        log (its CPU build serves a float32 checkpoint in bfloat16 unless told otherwise)."""
        assert self.proc is not None
        engine_dtype = engine_dtype_of(log_path) if log_path else None
        if engine_dtype and self.dtype in (None, "auto"):
            log.warning(
                "vLLM chose dtype %s for %s (no --dtype given); recorded in the endpoint",
                engine_dtype,
                self.model,
            )
        local = Path(self.model).expanduser()
        return {
            # absolute, so a client in another directory finds its config (checkpoint dtype)
            "checkpoint": str(local.absolute()) if local.exists() else self.model,
            "engine_dtype": engine_dtype,
            "url": self.url,
            "model": self.name,
            "pid": self.proc.pid,
            "run_id": run_id,
            "fp32_lm_head": self.fp32_lm_head,
            "dtype": self.dtype,
            "weight_sync": self.weight_sync,
        }


_ENGINE_DTYPE = re.compile(r"Initializing a V1 LLM engine .*?\bdtype=(?:torch\.)?(\w+)")


def serve_run(run: Run, server: VLLMServer, health_timeout: float) -> NoReturn:
    """`rlctl serve vllm` inside its run: the server started, its endpoint registered once
    healthy (what `--endpoint latest` finds), then supervised until a signal ends the run or
    the server dies (an error: nobody asked it to stop). Its log is kept either way."""
    run.add_model(server.model)
    run.artifact_dir.mkdir(parents=True, exist_ok=True)
    log_path = run.artifact_dir / "server.log"
    try:
        server.start(log_path)
        server.wait_healthy(health_timeout, log_path)
        run.info["endpoint"] = server.endpoint(run.run_id, log_path)
        run.save()
        log.info("serving %s at %s (run %s); Ctrl-C stops it", server.name, server.url, run.run_id)
        code = server.proc.wait()  # type: ignore[union-attr]
        raise RlctlError(f"vLLM exited on its own with status {code} (log: {log_path})")
    finally:
        server.stop()
        run.register_path("server.log", "log", log_path, fmt="log")


def engine_dtype_of(log_path: Path) -> str | None:
    """The dtype vLLM's engine runs, from the config line it logs when it starts."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return None
    found = _ENGINE_DTYPE.findall(text)
    return found[-1] if found else None


def _last_error(log_path: Path) -> str:
    try:
        lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    errors = [ln for ln in lines if "Error" in ln or "error" in ln]
    return (errors or lines or ["no output"])[-1].strip()[:300]
