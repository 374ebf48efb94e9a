"""The artifact store: run statuses, secrets, lineage, the index and its rebuild."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from rlctl.errors import RunInterrupted
from rlctl.store import Index, Run, Store
from tests.conftest import RLCTL, Runner, jsonl, stages

PROMPT = {"id": "p", "messages": [{"role": "user", "content": "q"}]}
QUERIES = [
    "SELECT * EXCLUDE (file_mtime_ns, file_size) FROM runs ORDER BY run_id",
    "SELECT * FROM artifacts ORDER BY path",
    "SELECT * FROM lineage ORDER BY ALL",
    "SELECT * FROM metrics ORDER BY ALL",
    "SELECT * FROM prompts ORDER BY run_id, id",
    "SELECT count(*) FROM pairs",
]


def run_json(store: Path, run_id: str) -> dict:
    return orjson.loads((store / "runs" / run_id / "run.json").read_bytes())


def test_run_records_what_happened(store: Path) -> None:
    s = Store(store)
    with Run(s, "unit ok", argv=["x"], config={"lr": 0.1}, seed=3) as run:
        assert run_json(store, run.run_id)["status"] == "running"
        with run.artifact("prompts", "prompt") as art:
            art.write({**PROMPT, "run_id": run.run_id})
        run.metric("loss", 0.5, step=1)
    info = run_json(store, run.run_id)
    assert info["status"] == "ok" and info["seed"] == 3 and info["config"] == {"lr": 0.1}
    assert info["argv"] == ["x"] and info["host"] and info["pid"] == os.getpid()
    assert info["versions"]["duckdb"] and info["versions"]["python"]
    assert info["ended_at"] >= info["started_at"] and info["duration_s"] >= 0
    assert info["artifacts"][0] | {"created_at": None} == {
        "name": "prompts",
        "kind": "prompt",
        "format": "parquet",
        "path": f"artifacts/{run.run_id}/prompts.parquet",
        "records": 1,
        "bytes": (store / info["artifacts"][0]["path"]).stat().st_size,
        "complete": True,
        "created_at": None,
    }
    assert (store / "runs" / run.run_id / "metrics.jsonl").read_text().count("\n") == 1


def test_failed_and_interrupted_runs_flag_partial_artifacts(store: Path) -> None:
    s = Store(store)
    with pytest.raises(ValueError), Run(s, "unit fail") as failed:
        failed.artifact("prompts", "prompt").write(PROMPT)
        raise ValueError("bad thing\nsecond line")
    with pytest.raises(RunInterrupted), Run(s, "unit stop") as stopped:
        raise RunInterrupted("SIGTERM", 143)
    f, i = run_json(store, failed.run_id), run_json(store, stopped.run_id)
    assert (f["status"], f["error"]) == ("failed", "bad thing")
    assert (i["status"], i["error"]) == ("interrupted", "SIGTERM")
    assert f["artifacts"][0]["complete"] is False
    assert f["artifacts"][0]["path"].endswith("prompts.jsonl.partial")
    rows = Index(s).query("SELECT count(*) FROM prompts").rows
    assert rows == [(0,)]  # a partial artifact never feeds a view


def test_secrets_never_reach_run_json(rlctl: Runner, store: Path) -> None:
    s = Store(store)
    key = "sk-abcdefghijklmnopqrstuvwxyz123456"
    argv = [
        "--api-key",
        key,
        "--token=hf_abcdefghijklmnopqrstuvwxyz",
        "--set",
        f"judge.api_key={key}",
    ]
    with Run(
        s,
        "unit secret",
        argv=argv,
        config={"judge": {"api_key": key, "url": "x"}, "note": f"Bearer {key}"},
    ) as run:
        pass
    text = (store / "runs" / run.run_id / "run.json").read_text()
    assert key not in text and "hf_abcdef" not in text
    assert run_json(store, run.run_id)["config"]["judge"] == {"api_key": "***", "url": "x"}


def test_lineage_through_a_pipe_and_store_references(rlctl: Runner, sql) -> None:
    r = rlctl(
        shell="$RLCTL data pull gsm8k --sample --limit 5 | $RLCTL data validate --kind prompt"
    )
    assert r.returncode == 0, r.stderr
    (pull,) = sql("SELECT run_id FROM runs WHERE command = 'data pull'")
    (edge,) = sql(
        "SELECT l.parent_run_id, l.via FROM lineage l JOIN runs r USING (run_id) "
        "WHERE r.command = 'data validate'"
    )
    assert edge == {"parent_run_id": pull["run_id"], "via": "record"}
    for ref in (
        pull["run_id"],
        pull["run_id"][-6:],
        f"{pull['run_id']}:prompts",
        "latest:data-pull",
        "latest:prompts",
    ):
        v = rlctl("data", "validate", "-i", ref, "--kind", "prompt")
        assert v.returncode == 0 and b"5 valid" in v.stderr, (ref, v.stderr)
    edges = sql("SELECT DISTINCT parent_run_id, via FROM lineage WHERE via = 'artifact'")
    assert edges == [{"parent_run_id": pull["run_id"], "via": "artifact"}]
    bad = rlctl("data", "validate", "-i", "latest:nothing", "--kind", "prompt")
    assert bad.returncode == 2 and "latest:nothing" in bad.stderr.decode()


def test_a_failed_producer_fails_its_consumer(rlctl: Runner, sql, tmp_path: Path) -> None:
    """The pipe just closes when the producer dies; the consumer must not call that complete."""
    good = '{"question": "q", "answer": "#### 1"}\n'
    (tmp_path / "half.jsonl").write_text(good * 2 + '{"question": "q"}\n')
    r = rlctl(shell="$RLCTL data pull gsm8k --from half.jsonl | $RLCTL data validate --kind prompt")
    assert r.returncode == 1
    assert "the stage feeding stdin" in r.stderr.decode() and "failed" in r.stderr.decode()
    statuses = {row["command"]: row["status"] for row in sql("SELECT command, status FROM runs")}
    assert statuses == {"data pull": "failed", "data validate": "failed"}


@contextlib.contextmanager
def stalled_pull(env: dict, sql, tmp_path: Path) -> Iterator[subprocess.Popen]:
    """A `data pull` reading a named pipe that yields three rows and then stalls: a writer
    caught mid-run, to be signalled. Yields once its run is `running` in the store."""
    fifo = tmp_path / "slow.jsonl"
    os.mkfifo(fifo)
    done = threading.Event()

    def feed() -> None:
        with open(fifo, "w") as f:
            f.write('{"question": "q", "answer": "#### 1"}\n' * 3)
            f.flush()
            done.wait(60)

    threading.Thread(target=feed, daemon=True).start()
    proc = subprocess.Popen(
        [*RLCTL.split(), "data", "pull", "gsm8k", "--from", str(fifo)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while sql("SELECT status FROM runs") != [{"status": "running"}]:
            assert time.monotonic() < deadline, "the writer never started"
            time.sleep(0.1)
        yield proc
    finally:
        done.set()
        proc.kill()
        proc.communicate(timeout=30)


def test_kill_9_is_marked_interrupted_at_the_next_query(env: dict, sql, tmp_path: Path) -> None:
    with stalled_pull(env, sql, tmp_path) as proc:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        (row,) = sql("SELECT status, error FROM runs")
        assert row["status"] == "interrupted" and "gone" in row["error"]
        assert sql("SELECT count(*) AS n FROM prompts") == [{"n": 0}]


def test_sigterm_marks_interrupted_and_sets_the_output_aside(
    env: dict, sql, tmp_path: Path
) -> None:
    with stalled_pull(env, sql, tmp_path) as proc:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert err.decode().strip() == "rlctl: error: interrupted (SIGTERM)"
    (row,) = sql("SELECT status, error FROM runs")
    assert row == {"status": "interrupted", "error": "SIGTERM"}
    (art,) = sql("SELECT complete, path FROM artifacts")
    assert art["complete"] is False and art["path"].endswith(".partial")


def test_a_closed_pipe_interrupts_quietly(rlctl: Runner, sql) -> None:
    r = rlctl(shell="set -o pipefail; $RLCTL data pull gsm8k --sample | head -n 1")
    assert r.returncode == 141
    assert len(jsonl(r.stdout)) == 1 and r.stderr == b""
    (row,) = sql("SELECT status, error FROM runs")
    assert row == {"status": "interrupted", "error": "the next stage closed the pipe"}


def test_rebuild_gives_identical_answers(rlctl: Runner, store: Path) -> None:
    for args in (
        ["gsm8k", "--sample", "--limit", "20"],
        ["hh-rlhf", "--sample", "--format", "parquet"],
        ["mbpp", "--sample"],
    ):
        assert rlctl("data", "pull", *args).returncode == 0
    rlctl(shell="$RLCTL data pull gsm8k --sample --limit 3 | $RLCTL data validate --kind prompt")
    rlctl("data", "validate", "-i", "missing.jsonl", "--kind", "prompt")  # a failed run too
    index = Index(Store(store))
    before = [index.query(q).rows for q in QUERIES]
    assert before[0] and before[4]
    r = rlctl("store", "rebuild")
    assert r.returncode == 0 and b"rebuilt from 6 runs" in r.stderr
    assert [index.query(q).rows for q in QUERIES] == before


def test_a_damaged_index_is_rebuilt_not_fatal(rlctl: Runner, sql, store: Path) -> None:
    assert rlctl("data", "pull", "gsm8k", "--sample", "--limit", "2").returncode == 0
    assert sql("SELECT count(*) AS n FROM prompts") == [{"n": 2}]
    (store / "index.duckdb").write_bytes(b"garbage" * 1000)
    assert sql("SELECT count(*) AS n FROM prompts") == [{"n": 2}]


def test_a_moved_store_reindexes_its_paths(rlctl: Runner, store: Path, tmp_path: Path) -> None:
    assert rlctl("data", "pull", "gsm8k", "--sample", "--limit", "2").returncode == 0
    assert rlctl("sql", "SELECT 1").returncode == 0
    moved = tmp_path / "moved"
    store.rename(moved)
    r = rlctl("--store", str(moved), "sql", "--json", "SELECT count(*) AS n FROM prompts")
    assert r.returncode == 0 and jsonl(r.stdout) == [{"n": 2}]


def test_a_silent_run_on_another_host_goes_stale(store: Path) -> None:
    s = Store(store)
    with Run(s, "unit remote") as run:
        pass
    info = dict(run_json(store, run.run_id), status="running", host="gpu-node-17", ended_at=None)
    (store / "runs" / run.run_id / "run.json").write_bytes(orjson.dumps(info))
    beat = store / "runs" / run.run_id / "heartbeat"
    os.utime(beat, (time.time() - 3600, time.time() - 3600))
    assert Index(s).query("SELECT status FROM runs").rows == [("interrupted",)]
    assert "no heartbeat from gpu-node-17" in run_json(store, run.run_id)["error"]


def test_a_fresh_heartbeat_keeps_a_remote_run_running(store: Path) -> None:
    s = Store(store)
    with Run(s, "unit remote") as run:
        pass
    info = dict(run_json(store, run.run_id), status="running", host="gpu-node-17")
    (store / "runs" / run.run_id / "run.json").write_bytes(orjson.dumps(info))
    assert Index(s).query("SELECT status FROM runs").rows == [("running",)]


def test_runs_ls_show_tail(rlctl: Runner, store: Path) -> None:
    rlctl("data", "pull", "gsm8k", "--sample", "--limit", "2")
    rlctl("data", "validate", "-i", "nope.jsonl", "--kind", "prompt")
    ls = jsonl(rlctl("runs", "ls", "--json").stdout)
    assert [r["command"] for r in ls] == ["data validate", "data pull"]  # newest first
    assert [r["status"] for r in jsonl(rlctl("runs", "ls", "--json", "--status", "ok").stdout)] == [
        "ok"
    ]
    assert [
        r["command"] for r in jsonl(rlctl("runs", "ls", "--json", "--command", "data-pull").stdout)
    ] == ["data pull"]
    show = rlctl("runs", "show", ls[1]["run_id"], "--json")
    assert orjson.loads(show.stdout)["artifacts"][0]["records"] == 2
    table = rlctl("runs", "show", "latest").stdout.decode()
    assert "data validate" in table and "failed" in table
    tail = rlctl("runs", "tail", ls[1]["run_id"]).stdout.decode().strip().split("\t")
    assert tail[2:] == ["records", "2"]


def test_tables_print_data_literally_not_as_markup(rlctl: Runner) -> None:
    """Model text is full of brackets ("[/INST]"); rich would read it as markup and fail."""
    failed = rlctl("data", "validate", "-i", "p[/x].jsonl", "--kind", "prompt")
    assert failed.returncode == 2
    for args in (("runs", "ls"), ("runs", "show", "latest")):
        r = rlctl(*args)
        assert r.returncode == 0, r.stderr
        assert "p[/x].jsonl" in r.stdout.decode().replace("\n", "")
    r = rlctl("sql", "SELECT '[/INST] [bold]hi' AS \"[b]col[/b]\"")
    assert r.returncode == 0, r.stderr
    assert "[/INST] [bold]hi" in r.stdout.decode() and "[b]col[/b]" in r.stdout.decode()


def test_sql_output_formats_and_errors(rlctl: Runner) -> None:
    rlctl("data", "pull", "gsm8k", "--sample", "--limit", "2")
    csv = rlctl("sql", "--csv", "SELECT id, reference FROM prompts ORDER BY id").stdout.decode()
    assert csv.splitlines() == ["id,reference", "gsm8k/test/0,18", "gsm8k/test/1,3"]
    rows = jsonl(rlctl("sql", "--json", "SELECT messages FROM prompts LIMIT 1").stdout)
    assert rows[0]["messages"][0]["role"] == "user"  # JSON columns come back as structure
    table = rlctl("sql", "SELECT id FROM prompts").stdout.decode()
    assert "gsm8k/test/0" in table
    bad = rlctl("sql", "SELECT nope FROM prompts")
    assert bad.returncode == 2 and len(bad.stderr.decode().strip().splitlines()) == 1
    assert "SQL error" in bad.stderr.decode()


def test_runs_plot_reads_metrics_back(rlctl: Runner, tmp_path: Path) -> None:
    assert rlctl("data", "pull", "gsm8k", "--sample", "--limit", "3").returncode == 0
    r = rlctl("runs", "plot", "latest", "--metric", "records", "-o", "m.png")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG" and b"records" in r.stderr
    bad = rlctl("runs", "plot", "latest", "--metric", "nope", "-o", "m.png")
    assert bad.returncode == 2 and "no run in" in bad.stderr.decode()
    assert "logged nope" in bad.stderr.decode()


def test_runs_plot_latest_is_the_newest_run_that_logged_the_metric(
    rlctl: Runner, store: Path, tmp_path: Path
) -> None:
    """After `data pull | train sft` the pull may start last (both start together): `latest`
    for a plot is the newest run with the asked metrics, not the newest run."""
    with Run(Store(store), "unit train") as trained:
        for step, loss in enumerate((2.0, 1.0), start=1):
            trained.metric("loss", loss, step=step)
    assert rlctl("data", "pull", "gsm8k", "--sample", "--limit", "2").returncode == 0
    r = rlctl("runs", "plot", "latest", "--metric", "loss", "-o", "loss.png")
    assert r.returncode == 0, r.stderr
    assert trained.run_id in r.stderr.decode() and (tmp_path / "loss.png").exists()


def test_gc_removes_leftovers_of_ended_runs_only(
    rlctl: Runner, sql, store: Path, tmp_path: Path
) -> None:
    assert rlctl("data", "pull", "gsm8k", "--sample", "--limit", "2").returncode == 0
    (tmp_path / "half.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n{"question": 1}\n')
    assert (
        rlctl("data", "pull", "gsm8k", "--from", "half.jsonl").returncode == 2
    )  # leaves a .partial
    s = Store(store)
    with Run(s, "unit live") as live:  # a live run's temp file must survive
        temp = live.artifact_dir / ".x.jsonl.123.tmp"
        temp.parent.mkdir(parents=True, exist_ok=True)
        temp.write_text("in progress")
        dry = rlctl("store", "gc", "--dry-run")
        assert dry.returncode == 0 and b"would remove" in dry.stderr and b".partial" in dry.stderr
        assert list(store.rglob("*.partial"))  # nothing removed by a dry run
        assert rlctl("store", "gc").returncode == 0
        assert temp.exists() and not list(store.rglob("*.partial"))
    assert sql("SELECT count(*) AS n FROM artifacts WHERE NOT complete") == [{"n": 0}]
    assert sql("SELECT count(*) AS n FROM runs WHERE status = 'failed'") == [{"n": 1}]
    r = rlctl("store", "gc", "--failed")
    assert r.returncode == 0
    assert sql("SELECT status, count(*) AS n FROM runs GROUP BY 1 ORDER BY 1") == [
        {"status": "ok", "n": 2}
    ]
    assert sql("SELECT count(*) AS n FROM prompts") == [{"n": 2}]


def test_gc_failed_keeps_what_a_later_command_can_use(rlctl: Runner, store: Path) -> None:
    """An interrupted training run with checkpoints (--resume), an interrupted (stopped) serve
    run and an interrupted pull another run read are all kept by `gc --failed`; an
    interrupted run nothing uses, and a plain failed one, go."""
    s = Store(store)

    with pytest.raises(RunInterrupted), Run(s, "train grpo") as train:
        ckpt = train.artifact_dir / "trainer" / "checkpoint-2"
        ckpt.mkdir(parents=True)
        (ckpt / "trainer_state.json").write_text("{}")
        train.artifact("margins", "margin_log").write({"step": 1, "margin": 0.5})
        raise RunInterrupted("SIGTERM", 143)
    with pytest.raises(RunInterrupted), Run(s, "serve vllm") as serve:
        serve.info["endpoint"] = {"url": "http://127.0.0.1:1/v1", "run_id": serve.run_id}
        raise RunInterrupted("SIGINT", 130)
    with pytest.raises(RunInterrupted), Run(s, "data pull") as pull:
        pull.artifact("prompts", "prompt").write({**PROMPT, "run_id": pull.run_id})
        raise RunInterrupted("the next stage closed the pipe", 141)
    with Run(s, "rollout") as child:
        child.add_parents([pull.run_id])
    with pytest.raises(RunInterrupted), Run(s, "data pull") as orphan:
        raise RunInterrupted("SIGINT", 130)
    with pytest.raises(ValueError), Run(s, "judge") as broken:
        raise ValueError("boom")

    dry = rlctl("store", "gc", "--failed", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    err = dry.stderr.decode()
    assert f"keep {train.run_id}: interrupted, kept: holds checkpoints" in err
    assert f"keep {serve.run_id}: interrupted, kept: registered an endpoint" in err
    assert f"keep {pull.run_id}: interrupted, kept: is an input of run {child.run_id}" in err
    assert f"would remove {store / 'runs' / orphan.run_id}" in err
    assert f"would remove {store / 'runs' / broken.run_id}" in err
    assert "3 failed or interrupted runs kept" in err
    assert (store / "runs" / orphan.run_id).exists()  # a dry run removes nothing

    assert rlctl("store", "gc", "--failed").returncode == 0
    left = set(s.run_ids())
    assert {train.run_id, serve.run_id, pull.run_id, child.run_id} <= left
    assert not {orphan.run_id, broken.run_id} & left
    assert (ckpt / "trainer_state.json").exists()
    # what the stopped run logged before its checkpoint is the first part of the resumed run
    assert (train.artifact_dir / "margins.jsonl.partial").exists()


def _all_commands() -> Iterator[tuple[str, object]]:
    import click

    from rlctl.cli import main

    ctx = click.Context(main)

    def walk(cmd: object, path: str) -> Iterator[tuple[str, object]]:
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                yield from walk(cmd.get_command(ctx, name), f"{path} {name}".strip())
        else:
            yield path, cmd

    yield from walk(main, "")


def test_every_documented_flag_survives_redaction() -> None:
    """Secrets are masked by what they are, not by a word in a flag's name: `--max-tokens 64`
    was stored as `***`. Every option of every command, as a flag and as a config key, keeps
    its value; the real secret shapes are still masked (test_secrets_never_reach_run_json)."""
    import click

    from rlctl.store.redact import redact_argv, redact_value

    seen = 0
    for path, cmd in _all_commands():
        for param in cmd.params:
            if not isinstance(param, click.Option):
                continue
            for flag in param.opts:
                argv = [*path.split(), flag] + ([] if param.is_flag else ["64"])
                assert redact_argv(argv) == argv, f"rlctl {path} {flag}"
                if flag.startswith("--") and not param.is_flag:
                    assert redact_argv([f"{flag}=64"]) == [f"{flag}=64"], f"rlctl {path} {flag}"
                seen += 1
            conf = {param.name: 64, "trainer": {param.name: "64"}}
            assert redact_value(conf) == conf, f"rlctl {path}: config key {param.name}"
    assert seen > 100  # the walk reached every command
    sets = ["--set", "tokenizer.pad_token=<|endoftext|>", "--set", "max_new_tokens=8"]
    assert redact_argv(sets) == sets


def test_secret_environment_values_are_masked(store: Path, monkeypatch) -> None:
    """The value of a secret environment variable is masked wherever it appears, even when
    it has no recognisable shape."""
    secret = "plain-looking-value-42"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    with Run(
        Store(store), "unit env", argv=["--base-url", f"http://u:{secret}@h"], config={"x": secret}
    ) as run:
        pass
    assert secret not in (store / "runs" / run.run_id / "run.json").read_text()


def test_lineage_walks_from_an_eval_score_to_the_pull(
    rlctl: Runner, sql, store: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """eval score -> model -> training run -> its data -> the pull, in the cookbook's one query
    (also run on a `make demo` store, see the issue note); the model is linked by its run when
    read from the store through a symlink, and by content when copied out of it."""
    import re
    import shutil

    from tests.conftest import ROOT

    r = stages(
        rlctl,
        "data pull gsm8k --sample --limit 4",
        f"train sft --model {tiny_model} --target meta.solution --max-steps 1 "
        "--set trainer.max_length=1024",
    )
    assert r.returncode == 0, r.stderr
    (ckpt,) = sql("SELECT a.run_id, a.path, a.fingerprint FROM artifacts a WHERE a.kind = 'model'")
    assert ckpt["fingerprint"].startswith("sha256:")
    (tmp_path / "link").symlink_to(ckpt["path"])
    shutil.copytree(ckpt["path"], tmp_path / "copy")
    # relative, through a symlink
    with Run(Store(store), "unit load") as via_link, contextlib.chdir(tmp_path):
        via_link.add_model("link")
    assert via_link.info["inputs"][0]["run_id"] == ckpt["run_id"]
    e = rlctl(
        "eval", "gsm8k", "--model", "copy", "--shots", "0", "--data", "latest:data-pull",
        "--gen-kwargs", "max_gen_toks=4", timeout=300,
    )  # fmt: skip
    assert e.returncode == 0, e.stderr
    (edge,) = sql(
        "SELECT l.input, l.parent_run_id FROM lineage l JOIN runs r USING (run_id) "
        "WHERE r.command = 'eval' AND l.via = 'model'"
    )
    assert edge == {"input": str(tmp_path / "copy"), "parent_run_id": ckpt["run_id"]}
    cookbook = (ROOT / "docs" / "cookbook.md").read_text()
    query = re.findall(r"```sql\n(.*?)```", cookbook, re.S)[10]
    rows = sql(query)
    assert rows and all(
        "train sft (model)" in x["lineage"] and "data pull (" in x["lineage"] for x in rows
    ), rows


class _Echo401:
    """An OpenAI-compatible server that refuses every request and echoes the key it got,
    as some do in their 401 message."""

    def __enter__(self) -> str:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                key = self.headers.get("Authorization", "").removeprefix("Bearer ")
                body = orjson.dumps(
                    {"error": {"message": f"Incorrect API key provided: {key}", "code": 401}}
                )
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()


def test_secrets_in_errors_and_urls_never_reach_the_store(
    rlctl: Runner, sql, store: Path, tmp_path: Path
) -> None:
    """A server that echoes the key in its 401 put it into run.json's `error` (and the index);
    a password inside --base-url was stored verbatim. Neither reaches the store, nor stderr."""
    import base64

    key = "lab-internal-key-7f3a9c2e1d"  # no known shape: masked as $OPENAI_API_KEY's value
    basic = base64.b64encode(b"me:hunter2secret")  # what the client sends for user:pw@
    (tmp_path / "p.jsonl").write_bytes(orjson.dumps({"id": "a", "prompt": "hi"}) + b"\n")
    with _Echo401() as url:
        for base in (url, url.replace("http://", "http://me:hunter2secret@")):
            r = rlctl(
                "rollout", "-i", "p.jsonl", "--backend", "openai", "--model", "m",
                "--base-url", base, extra_env={"OPENAI_API_KEY": key},
            )  # fmt: skip
            assert r.returncode != 0 and b"401" in r.stderr
            for leak in (key.encode(), b"hunter2secret", basic):
                assert leak not in r.stderr
    for path in store.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for leak in (key.encode(), b"hunter2secret", basic):
                assert leak not in data, path
    runs = sql("SELECT error, config->>'base_url' AS url FROM runs ORDER BY started_at")
    assert [("***" in x["error"]) for x in runs] == [True, True]
    assert runs[1]["url"].startswith("http://me:***@127.0.0.1:")


def test_runs_diff_names_what_differs_and_nothing_else(rlctl: Runner, tmp_path: Path) -> None:
    """Two pulls that differ by one config key: `runs diff` lists exactly that key among the
    config (and the record count it changed among the metrics). Two judge runs with the same
    config on different files: only the input, by content hash, differs."""

    def run_id(*args: str) -> str:
        r = rlctl(*args)
        assert r.returncode == 0, r.stderr
        return r.stderr.decode().rsplit("(run ", 1)[1].split(")")[0]

    first = run_id("data", "pull", "gsm8k", "--sample", "--limit", "3")
    second = run_id("data", "pull", "gsm8k", "--sample", "--limit", "4")
    r = rlctl("runs", "diff", first, second, "--json")
    assert r.returncode == 0, r.stderr
    rows = [orjson.loads(x) for x in r.stdout.splitlines()]
    assert [(x["section"], x["key"], x["a"], x["b"]) for x in rows if x["section"] != "code"] == [
        ("config", "limit", 3, 4),
        ("metrics", "records", 3.0, 4.0),
    ]
    judged = []
    for i, completion in enumerate(["#### 4", "#### 5"]):
        f = tmp_path / f"r{i}.jsonl"
        f.write_bytes(orjson.dumps({"id": "q", "prompt": "2+2?", "reference": "4",
                                    "completion": completion}) + b"\n")  # fmt: skip
        judged.append(run_id("judge", "-i", str(f), "--judge", "math"))
    a, b = judged
    rows = [orjson.loads(x) for x in rlctl("runs", "diff", a, b, "--json").stdout.splitlines()]
    sections = {x["section"] for x in rows}
    assert "config" not in sections and "inputs" in sections, rows
    (inp,) = [x for x in rows if x["section"] == "inputs"]
    assert inp["a"].startswith("sha256:") and inp["a"] != inp["b"]
    same = rlctl("runs", "diff", a, a)
    assert same.returncode == 0 and "no recorded difference" in same.stderr.decode()


def test_replay_reproduces_the_run(rlctl: Runner, tmp_path: Path, store: Path) -> None:
    """`runs show RUN --replay` prints a command line; running it makes a run that `runs diff`
    finds identical in config, inputs and metrics (a pull with flags and --set; a judge of a
    file with several judges)."""
    rollouts = tmp_path / "r.jsonl"
    rollouts.write_bytes(
        orjson.dumps({"id": "q", "prompt": "2+2?", "reference": "4", "completion": "#### 4"})
        + b"\n"
    )
    r = rlctl(
        shell="$RLCTL data pull gsm8k --sample --limit 3 --shuffle --seed 5 --set format=jsonl.gz "
        f"> /dev/null && $RLCTL judge -i {rollouts} --judge math --judge format=0.1 "
        "--set format_search=true > /dev/null"
    )
    assert r.returncode == 0, r.stderr
    for command in ("data pull", "judge"):
        (original,) = rlctl("sql", "--csv", f"SELECT run_id FROM runs WHERE command = '{command}'"
                            ).stdout.decode().split()[1:]  # fmt: skip
        line = rlctl("runs", "show", original, "--replay").stdout.decode().strip()
        assert line.startswith(f"rlctl {command}"), line
        again = rlctl(shell=line.replace("rlctl", "$RLCTL", 1) + " > /dev/null")
        assert again.returncode == 0, (line, again.stderr)
        replayed = again.stderr.decode().rsplit("(run ", 1)[1].split(")")[0]
        rows = [orjson.loads(x) for x in rlctl("runs", "diff", original, replayed, "--json"
                                               ).stdout.splitlines()]  # fmt: skip
        assert not [x for x in rows if x["section"] in ("config", "inputs", "metrics")], (
            line,
            rows,
        )
    # a judge run recorded before the `judge` options section listed its judges under `judge`
    meta_path = next(store.glob("runs/*-judge-*/run.json"))
    meta = orjson.loads(meta_path.read_bytes())
    old = {k: v for k, v in meta["config"].items() if k not in ("reward", "judge")}
    meta["config"] = {**old, "judge": meta["config"]["reward"]}
    meta_path.write_bytes(orjson.dumps(meta))
    line = rlctl("runs", "show", meta_path.parent.name, "--replay").stdout.decode().strip()
    assert "--set 'reward=[math, format=0.1]'" in line, line
    assert rlctl(shell=line.replace("rlctl", "$RLCTL", 1) + " > /dev/null").returncode == 0


def test_latest_is_the_last_started_even_within_one_second(rlctl: Runner, store: Path) -> None:
    """Run ids sort by the second a run started in, then by a random part, so two runs of one
    second (a fast pull, then another) sort at random; `latest`, `latest:KIND` and
    `--resume latest` must still mean the one that started last."""
    first = _run_id(rlctl("data", "pull", "gsm8k", "--sample", "--limit", "2"))
    second = _run_id(rlctl("data", "pull", "gsm8k", "--sample", "--limit", "3"))
    runs = store / "runs"
    stamp = "20991231-235959-data-pull-"
    # the earlier run gets the higher random part: a name sort puts it first
    for rid, suffix in ((first, "ffffff"), (second, "000000")):
        new = f"{stamp}{suffix}"
        (runs / rid).rename(runs / new)
        (store / "artifacts" / rid).rename(store / "artifacts" / new)
        meta = orjson.loads((runs / new / "run.json").read_bytes())
        meta["run_id"] = new
        for a in meta["artifacts"]:
            a["path"] = a["path"].replace(rid, new)
        (runs / new / "run.json").write_bytes(orjson.dumps(meta))
    shown = rlctl("runs", "show", "latest", "--json")
    assert orjson.loads(shown.stdout)["run_id"] == f"{stamp}000000"
    read = rlctl("data", "validate", "--kind", "prompt", "-i", "latest:data-pull")
    assert read.returncode == 0 and "3 valid prompt records" in read.stderr.decode()


def _run_id(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, r.stderr.decode()
    return r.stderr.decode().rsplit("(run ", 1)[1].split(")")[0]


_OPENED: list[str] = []
_WATCH: list[bool] = []


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _WATCH and isinstance(args[0], (str, Path)):
        _OPENED.append(str(args[0]))


def test_a_query_never_reopens_runs_that_ended_before_the_last_sync(store: Path) -> None:
    """The catalog reads only what changed: after one sync, queries over ended runs open no
    run.json (Python's audit hook sees every open), and the metrics view names no
    metrics.jsonl (DuckDB's own reads): ended runs' metrics were copied into the index when
    they ended. A run that ends, or an ended run that gc rewrites, is read once more, alone."""
    import sys

    sys.addaudithook(_audit)  # Python's own record of every file it opens
    s = Store(store)
    for i in range(30):
        with Run(s, "pull") as run:
            run.metric("reward", float(i), step=1)
    index = Index(s)
    assert index.query("SELECT count(*) FROM metrics").rows == [(30,)]

    def opened(sql: str) -> list[str]:
        _OPENED.clear()
        _WATCH.append(True)
        try:
            rows = index.query(sql).rows
        finally:
            _WATCH.clear()
        return [rows, sorted(Path(p).name for p in _OPENED if "/runs/" in p)]

    assert opened("SELECT count(*) FROM runs") == [[(30,)], []]
    assert opened("SELECT max(value) FROM metrics") == [[(29.0,)], []]
    with Run(s, "late") as run:
        run.metric("reward", 99.0, step=1)
    rows, files = opened("SELECT count(*), max(value) FROM metrics")
    assert rows == [(31, 99.0)] and files == ["run.json"]
    assert opened("SELECT count(*) FROM runs") == [[(31,)], []]
    late = run.run_id
    s.write_run({**s.read_run(late), "error": "edited by gc"})  # journalled, as gc does
    rows, files = opened(f"SELECT error FROM runs WHERE run_id = '{late}'")
    assert rows == [("edited by gc",)] and files == ["run.json"]
    view = index.query("SELECT sql FROM duckdb_views() WHERE view_name = 'metrics'").rows
    assert "metrics.jsonl" not in view[0][0]


def test_an_older_jsonl_store_reads_and_compacts_to_parquet(
    rlctl: Runner, store: Path, tmp_path: Path
) -> None:
    """A store written with JSONL artifacts (an older rlctl, or RLCTL_STORE_FORMAT=jsonl) is
    queried as it is; `store compact` rewrites its artifacts as Parquet, record for record:
    every query gives the same answers, the reader's input names the new file, the JSONL is
    gone, and a rebuild from the files agrees."""
    old = {"RLCTL_STORE_FORMAT": "jsonl"}
    rollouts = tmp_path / "r.jsonl"
    rollouts.write_bytes(b"".join(
        orjson.dumps({"id": f"q{i}", "prompt": "2+2?", "reference": "4",
                      "completion": f"#### {i}", **({"meta": {"k": i}} if i % 2 else {})}) + b"\n"
        for i in range(6)
    ))  # fmt: skip
    for args in (("judge", "-i", str(rollouts), "--judge", "math"),
                 ("data", "pull", "hh-rlhf", "--sample", "--limit", "3"),
                 ("data", "validate", "--kind", "pair", "-i", "latest:data-pull")):  # fmt: skip
        r = rlctl(*args, extra_env=old)
        assert r.returncode == 0, r.stderr.decode()
    assert len(list(store.glob("artifacts/*/*.jsonl"))) == 2
    queries = [*QUERIES, "SELECT id, reward, verdict, completion FROM judged ORDER BY id",
               "SELECT * EXCLUDE (artifact) FROM pairs ORDER BY id"]  # fmt: skip
    index = Index(Store(store))
    before = [index.query(q).rows for q in queries[4:]]
    r = rlctl("store", "compact")
    assert r.returncode == 0 and "2 artifacts" in r.stderr.decode(), r.stderr.decode()
    assert not list(store.glob("artifacts/*/*.jsonl"))
    assert len(list(store.glob("artifacts/*/*.parquet"))) == 2
    assert [index.query(q).rows for q in queries[4:]] == before
    inputs = index.query("SELECT input FROM lineage WHERE via = 'artifact'").rows
    assert inputs and all(i[0].endswith(".parquet") and Path(i[0]).exists() for i in inputs)
    index.rebuild()
    assert [index.query(q).rows for q in queries[4:]] == before
    again = rlctl("store", "compact")
    assert "0 artifacts" in again.stderr.decode()


def test_compact_counts_an_artifact_file_that_is_gone(rlctl: Runner, store: Path) -> None:
    """A listed JSONL artifact whose file was deleted by hand is left as listed, and the
    summary line counts it (a warning alone scrolls away in a long compact)."""
    old = {"RLCTL_STORE_FORMAT": "jsonl"}
    for n in ("2", "3"):
        r = rlctl("data", "pull", "hh-rlhf", "--sample", "--limit", n, extra_env=old)
        assert r.returncode == 0, r.stderr.decode()
    gone, kept = sorted(store.glob("artifacts/*/*.jsonl"))
    gone.unlink()
    r = rlctl("store", "compact")
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert "1 artifacts" in err and "1 listed file missing" in err, err
    assert str(gone) in err
    assert not kept.exists() and len(list(store.glob("artifacts/*/*.parquet"))) == 1


def test_a_run_that_ends_while_the_index_looks_is_not_marked_interrupted(
    store: Path, monkeypatch
) -> None:
    """The index reads a run.json that says `running`, then finds the process gone: the
    process may have written `ok` and exited in between. The verdict must come from the
    file as it is after the process is gone, never overwrite a finished run."""
    import rlctl.store.index as index_module

    s = Store(store)
    with Run(s, "pull") as run:
        pass
    path = store / "runs" / run.run_id / "run.json"
    finished = orjson.loads(path.read_bytes())
    path.write_bytes(orjson.dumps({**finished, "status": "running", "ended_at": None}))

    def ends_then_dies(seen: dict, run_dir: Path) -> str | None:
        if seen.get("status") != "running":
            return None
        path.write_bytes(orjson.dumps(finished))  # its last write, just before it exits
        return "process 1 is gone (killed?)"

    monkeypatch.setattr(index_module, "death_reason", ends_then_dies)
    rows = Index(s).query("SELECT status FROM runs").rows
    assert rows == [("ok",)]
    assert orjson.loads(path.read_bytes())["status"] == "ok"
