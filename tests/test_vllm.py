"""A real vLLM (CPU build, its own venv) served by `rlctl serve vllm`, used by `rollout
--backend openai` and `--backend vllm`, then stopped by signal with no orphan left."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import psutil
import pytest

from tests.conftest import RLCTL, ROOT, compare_summary, jsonl, run_command, stored

pytestmark = pytest.mark.slow
VLLM_PYTHON = os.environ.get("RLCTL_VLLM_PYTHON") or str(ROOT / ".venv-vllm" / "bin" / "python")
if not Path(VLLM_PYTHON).exists():
    pytest.skip("no vLLM environment ('make vllm-env' builds .venv-vllm)", allow_module_level=True)


class Served:
    def __init__(self, proc: subprocess.Popen, store: Path, env: dict) -> None:
        self.proc, self.store, self.env = proc, store, env

    def run(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
        r = run_command(
            ["--store", str(self.store), *args], input, self.env, self.store.parent, 300
        )
        if b"no running 'serve vllm' endpoint" in r.stderr:
            pytest.fail(f"the module's vLLM server is gone:\n{self.why_gone()}")
        return r

    def rollout(self, *args: str, input: bytes) -> subprocess.CompletedProcess:
        """`rlctl rollout` against the served endpoint."""
        return self.run(
            "rollout", "--backend", "openai", "--endpoint", "latest", *args, input=input
        )

    def endpoint(self) -> dict:
        from rlctl.store import Store
        from rlctl.store.refs import find_endpoint

        return find_endpoint(Store(self.store), "latest")

    def why_gone(self) -> str:
        """What the server left behind when its endpoint stops counting as running (once seen
        mid-module under load, cause unknown): whether the supervisor still runs, the run's
        record and the tail of vLLM's own log (its stderr is left unread: reading a live pipe
        would block)."""
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        runs = sorted((self.store / "runs").glob("*serve-vllm*"))
        record = (runs[-1] / "run.json").read_text()[-1500:] if runs else "no run"
        logs = sorted((self.store / "artifacts").glob("*serve-vllm*/server.log"))
        tail = logs[-1].read_text()[-3000:] if logs else "no server.log"
        return f"rlctl serve: {state}\nrun.json: {record}\nserver.log tail:\n{tail}"


# The in-process engines (`--backend vllm`) keep vLLM's engine core in their own process: a
# separate one imports vLLM and torch again, ~40 s a test on this CPU (docs/generation.md).
# The served engine keeps vLLM's default, so its test still sees the engine core's process.
ENGINE_CORE_IN_PROCESS = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


@pytest.fixture(scope="module")
def served(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    store = tmp_path_factory.mktemp("vllm") / "store"
    env = {
        **os.environ,
        "RLCTL_VLLM_PYTHON": VLLM_PYTHON,
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "HF_HUB_OFFLINE": "1",
    }
    proc = subprocess.Popen(
        [
            *RLCTL.split(),
            "--store",
            str(store),
            "serve",
            "vllm",
            "--model",
            str(tiny_model),
            "--port",
            "0",
            "--dtype",
            "float32",
            "--max-model-len",
            "512",
            "--weight-sync",  # what GRPO's server mode needs; generation is unchanged
            "--enforce-eager",  # vLLM's own flag, passed through: no compile, a faster start
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    s = Served(proc, store, env)
    deadline = time.monotonic() + 600
    while True:
        assert proc.poll() is None, proc.stderr.read().decode()
        try:
            s.endpoint()
            break
        except Exception:  # noqa: BLE001 (not registered yet)
            assert time.monotonic() < deadline, "vLLM never became healthy"
            time.sleep(1)
    yield s
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)


def _prompts(n: int = 4) -> bytes:
    return b"".join(
        orjson.dumps(
            {"id": f"q{i}", "messages": [{"role": "user", "content": f"What is {i} + {i}?"}]}
        )
        + b"\n"
        for i in range(n)
    )


def test_rollout_through_the_served_endpoint(served: Served) -> None:
    for api in ("chat", "completions"):
        r = served.rollout(
            "--api",
            api,
            "-n",
            "2",
            "--max-tokens",
            "12",
            "--logprobs",
            input=_prompts(),
        )
        assert r.returncode == 0, r.stderr.decode()
        recs = jsonl(r.stdout)
        assert len(recs) == 8 and {x["backend"] for x in recs} == {"openai"}
        for x in recs:
            assert len(x["completion_token_ids"]) == len(x["completion_logprobs"]) > 0
            assert x["prompt_token_ids"] and x["model"] == served.endpoint()["model"]


def test_rollout_records_what_the_server_really_ran(served: Served, tiny_model: Path) -> None:
    """The endpoint's serve run says what vLLM's engine runs (read from the engine's own
    config line), the rollout run and every record carry it instead of the client's defaults
    (`dtype: auto`, `fp32_lm_head: false`), and lineage goes rollout -> serve -> model."""
    from rlctl.store import Index, Store

    ep = served.endpoint()
    assert ep["engine_dtype"] == "float32" and ep["dtype"] == "float32"
    r = served.rollout("--max-tokens", "4", input=_prompts(2))
    assert r.returncode == 0, r.stderr.decode()
    recs = jsonl(r.stdout)
    gen = recs[0]["generator"]
    assert gen["engine"] == "vllm server" and gen["dtype"] == "float32"
    assert gen["dtype_chosen_by"] == "user" and gen["checkpoint_dtype"] == "float32"
    assert gen["fp32_lm_head"] is False and gen["endpoint_run"] == ep["run_id"]
    run = orjson.loads((served.store / "runs" / recs[0]["run_id"] / "run.json").read_bytes())
    assert run["generator"] == gen and run["config"]["dtype"] == "float32"
    rows = (
        Index(Store(served.store))
        .query(
            "SELECT l.via, l.parent_run_id, m.input FROM lineage l "
            "JOIN lineage m ON m.run_id = l.parent_run_id AND m.via = 'model' "
            f"WHERE l.run_id = '{recs[0]['run_id']}' AND l.via = 'endpoint'"
        )
        .rows
    )
    assert rows == [("endpoint", ep["run_id"], str(tiny_model.resolve()))]
    # the same server by URL alone: nothing says what it runs, so nothing is assumed
    r = served.run(
        "rollout", "--backend", "openai", "--base-url", ep["url"], "--max-tokens", "4",
        input=_prompts(1),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    foreign = jsonl(r.stdout)[0]
    assert foreign["generator"]["dtype"] is None
    assert foreign["generator"]["dtype_chosen_by"] == "unknown"
    assert "generator dtype unknown" in r.stderr.decode()
    run = orjson.loads((served.store / "runs" / foreign["run_id"] / "run.json").read_bytes())
    assert run["config"]["dtype"] is None and run["config"]["fp32_lm_head"] is None


def _max_delta(served: Served, rollouts: bytes, model: Path, tmp_path: Path) -> float:
    """compare-logprobs (fp32 trainer) on these rollouts; the max |Δ| it stored."""
    (tmp_path / "r.jsonl").write_bytes(rollouts)
    c = served.run(
        "compare-logprobs",
        "-i",
        str(tmp_path / "r.jsonl"),
        "--model",
        str(model),
        "--dtype",
        "float32",
    )
    assert c.returncode == 0, c.stderr.decode()
    (summary,) = compare_summary(served.store).values()
    return summary["max_abs_delta"]


def test_fp32_served_generation_matches_an_fp32_trainer(
    served: Served, tiny_model: Path, tmp_path: Path
) -> None:
    r = served.rollout(
        "-n",
        "2",
        "--max-tokens",
        "24",
        "--logprobs",
        input=_prompts(6),
    )
    assert r.returncode == 0, r.stderr.decode()
    assert _max_delta(served, r.stdout, tiny_model, tmp_path) < 1e-4


def test_prompt_longer_than_the_context_is_one_line(served: Served) -> None:
    long = orjson.dumps({"id": "x", "prompt": "one two three " * 400}) + b"\n"
    r = served.rollout(
        "--no-chat-template",
        "--api",
        "completions",
        input=long,
    )
    assert r.returncode == 2, r.stderr.decode()
    err = r.stderr.decode().strip().splitlines()
    assert len(err) == 1 and "refused" in err[0]


def test_unreachable_endpoint(served: Served) -> None:
    r = served.run(
        "rollout", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", input=_prompts(1)
    )
    assert r.returncode == 1 and "unreachable" in r.stderr.decode()


def test_sample_vs_sample_judging_through_a_real_vllm_judge(served: Served) -> None:
    """50 prompts x 2 samples, judged by the served model itself (`--endpoint latest`) in both
    orders: with structured outputs every verdict is readable, every prompt with a non-tied
    verdict gives a pair and every tie is counted as position bias; without them the tiny
    model's replies are unreadable, and the run counts them instead of calling them ties."""
    r = served.rollout("-n", "2", "--max-tokens", "6", "--seed", "0", input=_prompts(50))
    assert r.returncode == 0, r.stderr.decode()
    rollouts = r.stdout
    judge = ("judge", "--judge", "llm", "--llm-mode", "samples", "--endpoint", "latest")
    r = served.run(*judge, "--llm-constrain", "--llm-max-tokens", "8", "--pairs", input=rollouts)
    assert r.returncode == 0, r.stderr.decode()
    pairs = [orjson.loads(line) for line in r.stdout.splitlines()]
    run_id = re.search(r"\(run (\S+)\)", r.stderr.decode()).group(1)
    run_dir = served.store / "runs" / run_id
    run = orjson.loads((run_dir / "run.json").read_bytes())
    judged_path = next(a["path"] for a in run["artifacts"] if a["name"] == "judged")
    judged = stored(served.store / judged_path)
    assert len(judged) == 100
    by_prompt: dict[str, list] = {}
    for j in judged:
        by_prompt.setdefault(j["id"], []).append(j["reward"])
    decided = {k for k, v in by_prompt.items() if None not in v and v[0] != v[1]}
    assert {p["id"] for p in pairs} == decided and len(pairs) == len(decided)
    metrics = {
        m["name"]: m["value"]
        for m in map(orjson.loads, (run_dir / "metrics.jsonl").read_bytes().splitlines())
    }
    assert metrics["llm/comparisons"] == 50 and metrics["llm/unreadable"] == 0
    assert metrics["llm/position_ties"] == 50 - len(decided)
    # the tiny random judge answers "Winner: A" whatever it reads (rate 1.0 with this model):
    # position bias only, which asking in both orders turns into ties, never into pairs
    assert 0 <= metrics["llm/first_position_rate"] <= 1
    assert run["judges"]["llm"]["model"] == served.endpoint()["model"]
    assert any(i.get("via") == "endpoint" for i in run["inputs"])

    free = served.run(*judge, "--llm-max-tokens", "8", input=rollouts)
    assert free.returncode == 0, free.stderr.decode()
    rewards = [orjson.loads(x)["reward"] for x in free.stdout.splitlines()]
    unreadable = sum(r is None for r in rewards) // 2
    assert f"{unreadable} of 50 verdicts unreadable" in free.stderr.decode()


def test_in_process_vllm_backend(served: Served, tiny_model: Path, tmp_path: Path) -> None:
    """`--backend vllm` runs inside the vLLM environment, where rlctl is installed too."""
    rlctl_vllm = str(Path(VLLM_PYTHON).with_name("rlctl"))
    (tmp_path / "p.jsonl").write_bytes(_prompts(3))
    r = subprocess.run(
        [
            rlctl_vllm,
            "--store",
            str(served.store),
            "rollout",
            "-i",
            str(tmp_path / "p.jsonl"),
            "--backend",
            "vllm",
            "--model",
            str(tiny_model),
            "--dtype",
            "float32",
            "-n",
            "2",
            "--max-tokens",
            "16",
            "--logprobs",
            "--max-model-len",
            "512",
            "--enforce-eager",
        ],
        capture_output=True,
        env={**served.env, **ENGINE_CORE_IN_PROCESS},
        timeout=600,
    )
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    recs = jsonl(r.stdout)
    assert {x["backend"] for x in recs} == {"vllm"}
    gen = recs[0]["generator"]  # read off the engine's own ModelConfig
    assert (gen["engine"], gen["dtype"], gen["dtype_chosen_by"]) == ("vllm", "float32", "user")
    assert _max_delta(served, r.stdout, tiny_model, tmp_path) < 1e-4


def test_vllm_takes_an_fp32_head_from_the_model_view(tiny_model: Path, tmp_path: Path) -> None:
    """TRL's colocated engine takes no hf_overrides; the view's config.json sets the same
    attribute, and vLLM's ModelConfig (what builds the head) reads it: fp32 over a bf16 body."""
    from rlctl.models.head_dtype import with_fp32_head

    view = with_fp32_head(str(tiny_model), tmp_path / "view")
    probe = (
        "import sys\nfrom vllm.config import ModelConfig\n"
        "for m in sys.argv[1:]: print(ModelConfig(model=m, dtype='bfloat16').head_dtype)"
    )
    r = subprocess.run(
        [VLLM_PYTHON, "-c", probe, str(view), str(tiny_model)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["torch.float32", "torch.bfloat16"]


def test_weight_sync_endpoint_serves_what_trl_server_mode_calls(served: Served) -> None:
    """`serve vllm --weight-sync` registers itself for `train grpo --vllm-mode server`, and
    the server has every route TRL 1.16's VLLMClient uses (weight transfer included)."""
    import urllib.request

    from rlctl.store import Store
    from rlctl.train.grpo import vllm_section

    endpoint = served.endpoint()
    assert endpoint["weight_sync"] is True
    conf = {"vllm_mode": "server", "vllm_endpoint": "latest", "fp32_lm_head": False}
    section = vllm_section(conf, Store(served.store))
    base = endpoint["url"].removesuffix("/v1")
    assert section == {"use_vllm": True, "vllm_mode": "server", "vllm_server_base_url": base}
    with urllib.request.urlopen(f"{base}/openapi.json", timeout=10) as r:
        routes = set(orjson.loads(r.read())["paths"])
    trl_client_routes = {
        "/health", "/get_world_size", "/init_weight_transfer_engine", "/start_weight_update",
        "/update_weights", "/finish_weight_update", "/reset_prefix_cache", "/v1/completions",
        "/v1/chat/completions", "/v1/models",
    }  # fmt: skip
    assert trl_client_routes <= routes, trl_client_routes - routes


def test_eval_with_the_in_process_vllm_backend(
    served: Served, tiny_model: Path, tmp_path: Path
) -> None:
    """lm-eval's own VLLM class, in the vLLM environment (which has rlctl[eval] too)."""
    from rlctl.data import SAMPLES

    data = tmp_path / "gsm8k.jsonl"
    data.write_bytes(b"".join((SAMPLES / "gsm8k-test.jsonl").read_bytes().splitlines(True)[:3]))
    r = subprocess.run(
        [
            str(Path(VLLM_PYTHON).with_name("rlctl")), "--store", str(served.store),
            "eval", "gsm8k", "--backend", "vllm", "--model", str(tiny_model), "--dtype",
            "float32", "--shots", "0", "--data", str(data), "--gen-kwargs", "max_gen_toks=8",
            "--max-model-len", "512", "--enforce-eager",
        ],
        capture_output=True, env={**served.env, **ENGINE_CORE_IN_PROCESS}, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    samples = jsonl(r.stdout)  # records only: vLLM's own logs went to stderr
    assert len(samples) == 3 and {s["backend"] for s in samples} == {"vllm"}
    from rlctl.store import Index, Store

    rows = (
        Index(Store(served.store))
        .query(
            f"SELECT filter, samples FROM evals WHERE run_id = '{samples[0]['run_id']}' ORDER BY 1"
        )
        .rows
    )
    assert rows == [("flexible-extract", 3), ("strict-match", 3)]


def test_eval_through_the_served_endpoint(served: Served, tmp_path: Path) -> None:
    """lm-eval's own OpenAI client against the registered endpoint, offline data."""
    from rlctl.data import SAMPLES

    data = tmp_path / "gsm8k.jsonl"
    data.write_bytes(b"".join((SAMPLES / "gsm8k-test.jsonl").read_bytes().splitlines(True)[:4]))
    r = served.run(
        "eval", "gsm8k", "--backend", "openai", "--endpoint", "latest", "--shots", "1",
        "--data", str(data), "--fewshot-data", "test", "--gen-kwargs", "max_gen_toks=8",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    samples = jsonl(r.stdout)
    assert len(samples) == 4 and {s["backend"] for s in samples} == {"openai"}
    # one example in each prompt (the tiny model's context is 512), never the document itself
    for s in samples:
        assert s["prompt"].count("Question:") == 2 and s["completion"] is not None
        assert s["prompt"].split("Question:")[1] != s["prompt"].split("Question:")[2]
    from rlctl.store import Index, Store

    rows = (
        Index(Store(served.store))
        .query(
            "SELECT filter, shots, samples, max_gen_toks, backend FROM evals "
            "WHERE backend = 'openai' ORDER BY filter"
        )
        .rows
    )
    assert rows == [("flexible-extract", 1, 4, 8, "openai"), ("strict-match", 1, 4, 8, "openai")]


def test_sigterm_stops_the_server_and_leaves_no_orphans(served: Served) -> None:
    """Last in the module: stops the shared server."""
    root = psutil.Process(served.endpoint()["pid"])
    tree = [root, *root.children(recursive=True)]
    assert len(tree) >= 2  # the API server and vLLM's engine core
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=120) == 128 + signal.SIGTERM
    time.sleep(1)
    assert [p.pid for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
    from rlctl.store import Index, Store

    rows = (
        Index(Store(served.store))
        .query("SELECT status, error FROM runs WHERE command = 'serve vllm'")
        .rows
    )
    assert rows == [("interrupted", "SIGTERM")]
    kinds = (
        Index(Store(served.store))
        .query(
            "SELECT kind FROM artifacts WHERE run_id IN (SELECT run_id FROM runs WHERE command = 'serve vllm')"
        )
        .rows
    )
    assert kinds == [("log",)]
