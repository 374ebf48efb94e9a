"""SQL over a growing store: whole-process `rlctl sql` time against store size, with DuckDB's
in-process floor on the same files measured in the same run.

Builds stores the way rlctl lays them out (run folders with run.json, artifacts, metrics.jsonl):
- runs: 1, 1k, 10k ended `data pull` runs of 5 prompt records each (one Parquet artifact each);
- judged records: 10k and 1M in one judge run, written by rlctl's own RecordWriter (JSONL and
  Parquet, to compare sizes), and 10M as ten such 1M runs;
- metrics: 1k ended runs x 1k steps x 20 names (20M rows).
The first query after a store is built syncs the index (reads every run once, copies ended
runs' metrics into it): reported as "first query". Every other figure is the median of 5
fresh `rlctl sql` processes. `strace` counts the run.json files a query on the 10k-run store
opens. Writes docs/bench/store_scale.md and docs/bench/store_scale.png.

Run: `.venv/bin/python bench/store_scale.py` (about 15 minutes on 2 cores, ~6 GB of disk in
a temporary folder), or `--quick` for the small sizes only.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import orjson
from report import ROOT, machine, publish, rlctl

from rlctl.records.io import RecordWriter

QUESTIONS = [
    orjson.loads(line)
    for line in (ROOT / "rlctl" / "data" / "samples" / "gsm8k-test.jsonl").read_bytes().splitlines()
]


AVG = "`select model, avg(reward) from judged group by 1`"
BEFORE = (
    "Before the Parquet layout and the change journal (same machine, JSONL artifacts, every "
    "run.json and metrics file read by every query): avg(reward) by model over 1M judged "
    "records 1.06 s; `count(*) from runs` 0.40 s at 1 run and 0.57 s at 5,001 runs; "
    "`count(*) from prompts` 1.42 s at 5,001 runs."
)


WORDS = sorted({w for q in QUESTIONS for w in q["question"].split()})


def completion(i: int) -> str:
    """A sampled completion: different for every record, as real samples are."""
    rng = random.Random(i)
    return " ".join(rng.choices(WORDS, k=25 + i % 30)) + f"\n#### {rng.randrange(1000)}"


def judged(i: int, run_id: str) -> dict:
    q = QUESTIONS[i % len(QUESTIONS)]
    return {
        "id": f"gsm8k/test/{i % len(QUESTIONS)}",
        "messages": [{"role": "user", "content": q["question"]}],
        "reference": q["answer"].rsplit("#### ", 1)[1],
        "source": "gsm8k",
        "completion": completion(i),
        "sample": i % 8,
        "model": f"model-{i % 4}",
        "backend": "vllm",
        "finish_reason": "stop",
        "reward": float(i % 3 == 0),
        "judge": "math",
        "verdict": {
            "mode": "auto",
            "extracted": str(i % 50),
            "reason": "matched" if i % 3 == 0 else "wrong",
        },
        "run_id": run_id,
    }


def run_json(run_id: str, command: str, artifacts: list[dict]) -> dict:
    t = "2026-12-01T00:00:00.000000+00:00"
    return {
        "format": 1,
        "run_id": run_id,
        "command": command,
        "argv": [],
        "config": {},
        "seed": 0,
        "status": "ok",
        "started_at": t,
        "ended_at": t,
        "duration_s": 1.0,
        "host": "bench",
        "pid": 1,
        "pid_started": 0,
        "cwd": "/",
        "git": None,
        "versions": {},
        "env": {},
        "environment": None,
        "error": None,
        "artifacts": artifacts,
        "inputs": [],
    }


def add_run(
    store: Path, run_id: str, command: str, files: dict[str, tuple[Path, str, int]]
) -> None:
    """A finished run whose artifacts are the given files (copied in)."""
    arts = []
    for name, (src, kind, n) in files.items():
        dst = store / "artifacts" / run_id / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        fmt = "parquet" if src.suffix == ".parquet" else "jsonl"
        arts.append(
            {
                "name": name,
                "kind": kind,
                "format": fmt,
                "path": str(dst.relative_to(store)),
                "records": n,
                "bytes": dst.stat().st_size,
                "complete": True,
                "created_at": "2026-12-01T00:00:00+00:00",
            }
        )
    (store / "runs" / run_id).mkdir(parents=True)
    (store / "runs" / run_id / "run.json").write_bytes(
        orjson.dumps(run_json(run_id, command, arts))
    )


def write_records(path: Path, records) -> Path:
    with RecordWriter(path) as w:
        w.write_all(records)
    return path


def sql_time(store: Path, query: str, repeat: int = 5) -> float:
    cmd = [rlctl(), "--store", str(store), "sql", "--csv", query]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True)
        times.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(r.stderr.decode())
    return statistics.median(times)


def first_query(store: Path, query: str) -> float:
    return sql_time(store, query, repeat=1)


def floor(files: list[Path], query: str, repeat: int = 5) -> float:
    """DuckDB in-process on the same Parquet files: the cost of the query itself."""
    import duckdb

    con = duckdb.connect()
    src = "read_parquet([" + ", ".join(f"'{f}'" for f in files) + "])"
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        con.execute(query.format(src=src)).fetchall()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_json_opens(store: Path, query: str) -> int | None:
    if not shutil.which("strace"):
        return None
    log = store / "strace.log"
    subprocess.run(
        [
            "strace",
            "-f",
            "-e",
            "trace=openat",
            "-o",
            str(log),
            rlctl(),
            "--store",
            str(store),
            "sql",
            "--csv",
            query,
        ],
        capture_output=True,
        check=True,
    )
    return sum("run.json" in line for line in log.read_text().splitlines())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes only (minutes)")
    args = ap.parse_args()
    run_sizes = [1, 1000] if args.quick else [1, 1000, 10000]
    judged_sizes = [10_000, 100_000] if args.quick else [10_000, 1_000_000]
    metric_runs = 50 if args.quick else 1000
    rows: list[str] = []
    curve: dict[str, list[tuple[int, float]]] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="rlctl-bench-") as tmp:
        d = Path(tmp)
        prompts = write_records(
            d / "prompts.parquet",
            (
                {
                    k: v
                    for k, v in judged(i, "r").items()
                    if k in ("id", "messages", "reference", "source", "run_id")
                }
                for i in range(5)
            ),
        )
        # -- runs -----------------------------------------------------------------------
        for n in run_sizes:
            store = d / f"runs-{n}"
            for i in range(n):
                add_run(
                    store,
                    f"20261201-000000-data-pull-{i:06x}",
                    "data pull",
                    {"prompts": (prompts, "prompt", 5)},
                )
            q = "SELECT count(*) FROM runs"
            cold = first_query(store, q)
            warm = sql_time(store, q)
            pq = sql_time(store, "SELECT count(*) FROM prompts", repeat=3)
            opens = run_json_opens(store, q)
            rows.append(
                f"| `select count(*) from runs` | {n:,} ended runs | {cold:.2f} | {warm:.3f} | "
                f"{'' if opens is None else opens} |"
            )
            rows.append(
                f"| `select count(*) from prompts` | {n:,} runs x 5 records | | {pq:.3f} | |"
            )
            curve.setdefault("count(*) from runs", []).append((n, warm))
            curve.setdefault("count(*) from prompts", []).append((n, pq))
        base = curve["count(*) from runs"][0][1]
        top = curve["count(*) from runs"][-1]
        notes.append(
            f"`count(*) from runs` at {top[0]:,} runs is {top[1] / base:.2f}x the 1-run store."
        )
        # -- judged -----------------------------------------------------------------------
        for n in judged_sizes:
            rid = "20261201-000000-judge-000001"
            t0 = time.perf_counter()
            pq_file = write_records(d / f"judged-{n}.parquet", (judged(i, rid) for i in range(n)))
            write_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            js_file = write_records(d / f"judged-{n}.jsonl", (judged(i, rid) for i in range(n)))
            write_js = time.perf_counter() - t0
            store = d / f"judged-{n}"
            add_run(store, rid, "judge", {"judged": (pq_file, "judged", n)})
            q = "SELECT model, avg(reward) FROM judged GROUP BY 1"
            cold = first_query(store, q)
            warm = sql_time(store, q)
            fl = floor([pq_file], "SELECT model, avg(reward) FROM {src} GROUP BY 1")
            ratio = pq_file.stat().st_size / js_file.stat().st_size
            rows.append(f"| {AVG} | {n:,} judged | {cold:.2f} | {warm:.3f} (floor {fl:.3f}) | |")
            curve.setdefault("avg(reward) by model", []).append((n, warm))
            notes.append(
                f"{n:,} judged records: Parquet {pq_file.stat().st_size / 2**20:.1f} MiB vs JSONL "
                f"{js_file.stat().st_size / 2**20:.1f} MiB ({100 * ratio:.0f}%); written in "
                f"{write_s:.1f} s as Parquet (JSONL, then converted), {write_js:.1f} s as JSONL."
            )
            js_file.unlink()
        if not args.quick:  # 10M: ten runs of the 1M file
            store = d / "judged-10M"
            for i in range(10):
                add_run(
                    store,
                    f"20261201-000000-judge-{i:06x}",
                    "judge",
                    {"judged": (pq_file, "judged", judged_sizes[-1])},
                )
            q = "SELECT model, avg(reward) FROM judged GROUP BY 1"
            cold = first_query(store, q)
            warm = sql_time(store, q)
            rows.append(f"| {AVG} | 10,000,000 judged (10 runs) | {cold:.2f} | {warm:.3f} | |")
            curve["avg(reward) by model"].append((10_000_000, warm))
        # -- metrics ---------------------------------------------------------------------
        store = d / "metrics"
        names = ["reward", "loss", *[f"m{j}" for j in range(18)]]
        for r in range(metric_runs):
            rid = f"20261201-000000-train-grpo-{r:06x}"
            add_run(store, rid, "train grpo", {})
            with open(store / "runs" / rid / "metrics.jsonl", "wb") as f:
                for step in range(1, 1001):
                    for j, name in enumerate(names):
                        f.write(
                            orjson.dumps(
                                {
                                    "run_id": rid,
                                    "step": step,
                                    "name": name,
                                    "value": (r * 7 + step * 13 + j) % 997 / 997,
                                    "time": "2026-12-01T00:00:00+00:00",
                                }
                            )
                            + b"\n"
                        )
        q = "SELECT run_id, max(value) FROM metrics WHERE name = 'reward' GROUP BY 1"
        cold = first_query(store, q)
        warm = sql_time(store, q)
        total = metric_runs * 1000 * len(names)
        rows.append(
            f"| `max(value) per run where name = 'reward'` | {total:,} metric rows "
            f"({metric_runs:,} runs) | {cold:.2f} | {warm:.3f} | |"
        )
        plot(curve, ROOT / "docs" / "bench" / "store_scale.png")
    lines = [
        "# Store at scale: SQL time against store size",
        "",
        f"`python bench/store_scale.py{' --quick' if args.quick else ''}` on {machine()}. "
        "Whole `rlctl sql` processes (Python start, imports, index sync, query, output): the "
        "median of 5. *First query* is the one right after the store was built (the index "
        "sync reads every run once and copies ended runs' metrics into the index). *Floor*: "
        "DuckDB in-process on the same Parquet file. *run.json opened*: counted by strace.",
        "",
        "| query | store | first query s | s (median) | run.json opened |",
        "| --- | --- | --- | --- | --- |",
        *rows,
        "",
        *[f"- {n}" for n in notes],
        "",
        BEFORE,
        "",
        "![SQL time against store size](store_scale.png)",
    ]
    publish("store_scale", lines)


def plot(curve: dict[str, list[tuple[int, float]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, pts in curve.items():
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("store size (runs, or judged records)")
    ax.set_ylabel("whole rlctl sql process, s")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


if __name__ == "__main__":
    os.environ.setdefault("RLCTL_LOCK_TIMEOUT", "600")
    main()
