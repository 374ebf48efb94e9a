"""sbatch, scontrol and scancel, and the job state written back into the submit run.

The submit run's run.json holds `slurm: {job_id, state, ...}`; `rlctl slurm status` refreshes it
from the controller (scontrol, or sacct once the controller has forgotten the job), so the store
keeps the last known state even after the cluster purges the job.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlctl.errors import BadInput, RlctlError
from rlctl.store.layout import Store

if TYPE_CHECKING:
    from rlctl.store import Run

# Job states after which nothing changes (squeue(1), JOB STATE CODES).
TERMINAL = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "TIMEOUT",
}
# Which array task state speaks for the whole job: the first present in this order.
_PRECEDENCE = ("RUNNING", "PENDING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BadInput(f"{name} not found: rlctl slurm needs the Slurm client commands on PATH")
    return path


def _call(args: list[str], what: str) -> subprocess.CompletedProcess:
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        msg = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
        raise RlctlError(f"{what} failed: {msg}")
    return r


def submit(script: Path) -> str:
    """The job id (`sbatch --parsable` prints `ID` or `ID;cluster`). A job the controller
    refuses (a partition, account or limit that does not exist) is the user's to fix: exit 2;
    a controller out of reach is a runtime failure."""
    try:
        r = _call([_tool("sbatch"), "--parsable", str(script)], "sbatch")
    except RlctlError as e:
        if "Unable to contact" in str(e):
            raise
        raise BadInput(f"{e}; check the cluster settings (rlctl slurm submit --dry-run)") from e
    return r.stdout.strip().split(";")[0]


def submit_run(run: Run, store: Store, spec: dict[str, Any], script: str) -> str:
    """`rlctl slurm submit` inside its run: the rendered script kept as an artifact, the job
    submitted and its id recorded (what `slurm status` and `--cancel` follow). Returns it."""
    path = run.artifact_dir / "job.sbatch"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script)
    run.register_path("script", "sbatch", path, "sbatch")
    (store.root / "slurm").mkdir(parents=True, exist_ok=True)  # sbatch will not create it
    job_id = submit(path)
    run.info["slurm"] = {
        "job_id": job_id,
        "state": "PENDING",
        "name": spec["name"],
        "template": spec["template"],
        "tasks": [],
    }
    run.save()
    return job_id


def cancel(job_id: str, graceful: bool = False) -> None:
    """scancel; `graceful` sends SIGTERM to the batch shell instead, which passes it to the
    running stage (the templates' `forward`), so training saves a checkpoint first."""
    args = ["--batch", "--signal=TERM"] if graceful else []
    _call([_tool("scancel"), *args, job_id], f"scancel {job_id}")


def query(job_id: str) -> dict[str, Any] | None:
    """{state, tasks: [{id, state, exit_code, nodes}]}, or None when no one knows the job."""
    r = subprocess.run(
        [_tool("scontrol"), "show", "job", "-o", job_id], capture_output=True, text=True
    )
    tasks = []
    if r.returncode == 0:
        for line in r.stdout.splitlines():
            f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            if f.get("JobId"):
                task = f.get("ArrayTaskId")
                tasks.append(
                    {
                        "id": f"{job_id}_{task}" if task else f["JobId"],
                        "state": f.get("JobState", "UNKNOWN"),
                        "exit_code": f.get("ExitCode"),
                        "nodes": f.get("NodeList"),
                        "reason": f.get("Reason") if f.get("Reason") != "None" else None,
                    }
                )
    elif shutil.which("sacct"):
        tasks = _sacct(job_id)
    if not tasks:
        return None
    tasks.sort(key=_task_index)
    return {"state": overall([t["state"] for t in tasks]), "tasks": tasks}


def _task_index(task: dict[str, Any]) -> int:
    """Array task order; a pending range (`4_[2-9]`, `4_2-9`) sorts by its first index."""
    m = re.search(r"_\[?(\d+)", task["id"])
    return int(m.group(1)) if m else -1


def _sacct(job_id: str) -> list[dict[str, Any]]:
    r = subprocess.run(
        ["sacct", "-j", job_id, "-X", "-n", "-P", "-o", "JobID,State,ExitCode,NodeList"],
        capture_output=True,
        text=True,
    )
    out = []
    for line in r.stdout.splitlines() if r.returncode == 0 else []:
        jid, state, code, nodes = [*line.split("|"), "", "", ""][:4]
        state = state.split()[0] if state else "UNKNOWN"  # "CANCELLED by 0" -> CANCELLED
        out.append({"id": jid, "state": state, "exit_code": code, "nodes": nodes, "reason": None})
    return out


def overall(states: list[str]) -> str:
    """One state for an array: any task still moving wins; then all alike; else FAILED."""
    for s in _PRECEDENCE:
        if s in states:
            return s
    distinct = set(states)
    if len(distinct) == 1:
        return states[0]
    return "CANCELLED" if "CANCELLED" in distinct else "FAILED"


def refresh(store: Store, run: dict[str, Any]) -> dict[str, Any]:
    """Ask the controller, and write what it says into the submit run's run.json."""
    slurm = dict(run["slurm"])
    if slurm.get("state") in TERMINAL:
        return run
    found = query(slurm["job_id"])
    if found is None:
        return run
    if (found["state"], found["tasks"]) != (slurm.get("state"), slurm.get("tasks")):
        slurm.update(found)
        run = dict(run, slurm=slurm)
        store.write_run(run)
    return run


def submit_runs(store: Store, refs: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The `slurm submit` runs named by run or job id (all of them, newest first, if none)."""
    runs = [r for r in store.iter_runs() if r.get("slurm", {}).get("job_id")]
    if not refs:
        return runs
    out = []
    for ref in refs:
        hit = [r for r in runs if r["slurm"]["job_id"] == ref]
        if not hit:
            rid = store.match_run(ref)
            hit = [r for r in runs if r["run_id"] == rid]
        if not hit:
            raise BadInput(
                f"{ref}: neither a Slurm job id nor a 'slurm submit' run in {store.root}"
            )
        out.extend(hit)
    return out
