"""`llm` against a real HTTP server: scores, retries on 429/5xx, the cache, no key stored."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import orjson

from tests.chat_server import ChatServer
from tests.conftest import Runner, jsonl, stored

KEY = "sk-test-judge-key-0123456789abcdefghij"
ROLLOUTS = [
    {
        "id": "q1",
        "prompt": "Explain X",
        "completion": "GOOD explanation",
        "reference": "meh",
        "sample": 0,
    },
    {
        "id": "q2",
        "prompt": "Explain Y",
        "completion": "nonsense",
        "reference": "GOOD answer",
        "sample": 0,
    },
    {
        "id": "q3",
        "prompt": "Explain Z",
        "completion": "so-so",
        "reference": "also so-so",
        "sample": 0,
    },
]


def _write(tmp_path: Path) -> None:
    (tmp_path / "r.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in ROLLOUTS))


def _judge(rlctl: Runner, url: str, *extra: str):
    return rlctl(
        "judge",
        "-i",
        "r.jsonl",
        "--judge",
        "llm",
        "--base-url",
        url,
        "--model",
        "judge-model",
        *extra,
        extra_env={"OPENAI_API_KEY": KEY},
    )


def test_pointwise_retries_and_cache(rlctl: Runner, tmp_path: Path, store: Path) -> None:
    _write(tmp_path)
    with ChatServer(faults=[429, 500, 503]) as server:
        r = _judge(rlctl, server.url, "--concurrency", "1")
        assert r.returncode == 0, r.stderr
        judged = jsonl(r.stdout)
        assert [j["reward"] for j in judged] == [0.9, 0.2, 0.2]
        assert judged[0]["verdict"]["rating"] == 9.0 and not judged[0]["verdict"]["cached"]
        assert len(server.requests) == 3 + 3  # three injected failures, retried, then three answers
        assert set(server.auth) == {f"Bearer {KEY}"}
        again = _judge(rlctl, server.url)
        assert again.returncode == 0, again.stderr
        assert len(server.requests) == 6  # the re-run cost nothing
        assert all(j["verdict"]["cached"] for j in jsonl(again.stdout))
        assert [j["reward"] for j in jsonl(again.stdout)] == [0.9, 0.2, 0.2]
    leaked = [p for p in store.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert leaked == []


def test_pairwise_swaps_positions(rlctl: Runner, tmp_path: Path) -> None:
    _write(tmp_path)
    with ChatServer() as server:
        r = _judge(rlctl, server.url, "--llm-mode", "pairwise")
        assert r.returncode == 0, r.stderr
    judged = jsonl(r.stdout)
    assert [(j["reward"], j["verdict"]["outcome"]) for j in judged] == [
        (1.0, "win"),
        (0.0, "loss"),
        (0.5, "tie"),
    ]
    assert judged[2]["verdict"]["winners"] == ["A", "A"]  # the server's A bias, cancelled
    assert len(server.requests) == 6  # two orders per record


def test_unreachable_endpoint_is_one_clear_line(rlctl: Runner, tmp_path: Path) -> None:
    _write(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave: nothing listens there
    r = _judge(rlctl, f"http://127.0.0.1:{port}/v1")
    assert r.returncode == 1
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "unreachable" in lines[0], lines


def test_server_errors_after_retries_fail_the_run(rlctl: Runner, tmp_path: Path, sql) -> None:
    _write(tmp_path)
    with ChatServer(faults=[500] * 20) as server:
        r = _judge(rlctl, server.url, "--concurrency", "1")
    assert r.returncode == 1 and "answered 500 after retries" in r.stderr.decode()
    assert sql("SELECT status FROM runs") == [{"status": "failed"}]


def _records(tmp_path: Path, rows: list[dict]) -> None:
    (tmp_path / "r.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))


def _metrics(store: Path, run_id: str) -> dict[str, float]:
    lines = (store / "runs" / run_id / "metrics.jsonl").read_text().splitlines()
    return {m["name"]: m["value"] for m in map(orjson.loads, lines)}


def test_an_unreadable_pairwise_verdict_is_null_not_a_tie(
    rlctl: Runner, tmp_path: Path, store: Path
) -> None:
    """It used to count as 0.5: 100 unreadable replies made a "50% win rate"."""
    rows = [*ROLLOUTS, {**ROLLOUTS[0], "id": "q4", "completion": "GARBLE"}]
    _records(tmp_path, rows)
    with ChatServer() as server:
        r = _judge(rlctl, server.url, "--llm-mode", "pairwise")
    assert r.returncode == 0, r.stderr
    judged = jsonl(r.stdout)
    assert [j["reward"] for j in judged] == [1.0, 0.0, 0.5, None]
    assert judged[3]["verdict"]["outcome"] == "unreadable"
    assert judged[3]["verdict"]["winners"] == [None, None]
    assert "1 of 4 verdicts unreadable (null rewards, not ties)" in r.stderr.decode()
    m = _metrics(store, judged[0]["run_id"])
    assert m["llm/unreadable"] == 1 and m["llm/comparisons"] == 4
    assert m["llm/position_ties"] == 1  # q3: the server's A bias, seen in both orders


def test_a_run_of_mostly_unreadable_verdicts_says_so(rlctl: Runner, tmp_path: Path) -> None:
    _records(tmp_path, [{**r, "completion": "GARBLE"} for r in ROLLOUTS])
    with ChatServer() as server:
        r = _judge(rlctl, server.url)  # pointwise: no rating in any reply
    assert r.returncode == 0
    assert [j["reward"] for j in jsonl(r.stdout)] == [None, None, None]
    err = r.stderr.decode()
    assert "3 of 3 verdicts unreadable" in err and "MOST of the judge's replies" in err


SAMPLES = [
    {"id": "q1", "prompt": "P1", "completion": "GOOD one", "sample": 0},
    {"id": "q1", "prompt": "P1", "completion": "plain", "sample": 1},
    {"id": "q2", "prompt": "P2", "completion": "meh", "sample": 0},
    {"id": "q2", "prompt": "P2", "completion": "so-so", "sample": 1},
    {"id": "q3", "prompt": "P3", "completion": "GARBLE", "sample": 0},
    {"id": "q3", "prompt": "P3", "completion": "fine", "sample": 1},
    {"id": "q4", "prompt": "P4", "completion": "alone", "sample": 0},
    {"id": "q5", "prompt": "P5", "completion": "GOOD", "sample": 0},
    {"id": "q5", "prompt": "P5", "completion": "x", "sample": 1},
    {"id": "q5", "prompt": "P5", "completion": "y", "sample": 2},
]


def test_sample_vs_sample_gives_win_rates_and_pairs(
    rlctl: Runner, tmp_path: Path, store: Path
) -> None:
    """The β-DPO lab's protocol: no reference, the samples of a prompt judged against each
    other in both orders; a pair for each prompt with a preference, the unreadable counted."""
    _records(tmp_path, SAMPLES)
    with ChatServer() as server:
        # a batch of 3 must not split q5's samples
        r = _judge(rlctl, server.url, "--llm-mode", "samples", "--pairs", "--batch-size", "3")
        assert r.returncode == 0, r.stderr
        assert len(server.requests) == 2 * (1 + 1 + 1 + 3)  # both orders of every pair
    pairs = jsonl(r.stdout)
    assert [(p["id"], p["chosen"], p["rejected"]) for p in pairs] == [
        ("q1", "GOOD one", "plain"),
        ("q5", "GOOD", "x"),
    ]
    run_id = pairs[0]["run_id"]
    judged = stored(store / "artifacts" / run_id / "judged.parquet")
    assert [j["reward"] for j in judged] == [1.0, 0.0, 0.5, 0.5, None, None, None, 1.0, 0.25, 0.25]
    assert judged[7]["verdict"] | {"model": None} == {
        "model": None,
        "mode": "samples",
        "win": 2,
        "loss": 0,
        "tie": 0,
        "unreadable": 0,
        "opponents": [1, 2],
    }
    assert judged[6]["verdict"]["reason"] == "the only sample of its prompt"
    m = _metrics(store, run_id)
    assert m["llm/comparisons"] == 6 and m["llm/unreadable"] == 1
    assert m["llm/position_ties"] == 2 and m["llm/first_position_rate"] == 0.7
    assert m["pairs"] == 2 and m["tied_prompts"] == 1


def test_sample_vs_sample_needs_a_prompts_samples_together(rlctl: Runner, tmp_path: Path) -> None:
    _records(tmp_path, [SAMPLES[0], SAMPLES[2], SAMPLES[1]])
    with ChatServer() as server:
        r = _judge(rlctl, server.url, "--llm-mode", "samples")
    assert r.returncode == 2
    assert "id 'q1' comes back after other prompts" in r.stderr.decode()


def test_templates_builtin_and_user_file_with_their_hash(
    rlctl: Runner, tmp_path: Path, store: Path
) -> None:
    _records(tmp_path, SAMPLES[:2])
    custom = tmp_path / "judge.jinja"
    custom.write_text(
        "Grade for a pirate audience.\n{{ prompt }}\n[Response A]\n{{ response_a }}\n"
        "[Response B]\n{{ response_b }}\n"
    )
    with ChatServer() as server:
        r = _judge(rlctl, server.url, "--llm-mode", "samples", "--llm-template", "hh-helpful")
        assert r.returncode == 0, r.stderr
        assert "more helpful to the person" in server.requests[0]["messages"][-1]["content"]
        r = _judge(rlctl, server.url, "--llm-mode", "samples", "--llm-template", str(custom))
        assert r.returncode == 0, r.stderr
        assert server.requests[-1]["messages"][-1]["content"].startswith("Grade for a pirate")
    run_id = jsonl(r.stdout)[0]["run_id"]
    run = orjson.loads((store / "runs" / run_id / "run.json").read_bytes())
    assert run["judges"]["llm"] == {
        "model": "judge-model",
        "mode": "samples",
        "template": str(custom),
        "template_sha256": hashlib.sha256(custom.read_bytes()).hexdigest(),
    }
    assert [j["reward"] for j in jsonl(r.stdout)] == [1.0, 0.0]


def test_a_bad_template_is_one_line(rlctl: Runner, tmp_path: Path) -> None:
    _records(tmp_path, SAMPLES[:2])
    (tmp_path / "undef.jinja").write_text("{{ prompt }} {{ answer }}")
    (tmp_path / "syntax.jinja").write_text("line one\n{% if %}")
    with ChatServer() as server:
        for name, named in (
            ("undef.jinja", "'answer' is undefined; a pairwise template gets prompt, response_a"),
            ("syntax.jinja", "syntax.jinja:2: invalid Jinja template"),
            ("nosuch", "neither a built-in (default, hh-helpful, hh-harmless, tldr) nor a file"),
        ):
            r = _judge(rlctl, server.url, "--llm-mode", "pairwise", "--llm-template", name)
            lines = r.stderr.decode().strip().splitlines()
            assert r.returncode == 2 and len(lines) == 1 and named in lines[0], lines


def test_pairwise_without_references_stops_instead_of_scoring_null(
    rlctl: Runner, tmp_path: Path
) -> None:
    """HH pairs have no reference: every reward came back null, with exit 0."""
    _records(tmp_path, [{k: v for k, v in r.items() if k != "reference"} for r in SAMPLES[:2]])
    with ChatServer() as server:
        r = _judge(rlctl, server.url, "--llm-mode", "pairwise")
        assert server.requests == []
    lines = r.stderr.decode().strip().splitlines()
    assert r.returncode == 2 and "no record has a reference" in lines[-1], lines
    assert "--llm-mode samples" in lines[-1]


def test_judge_llm_model_in_its_section_reaches_the_server(
    rlctl: Runner, tmp_path: Path, sql
) -> None:
    """`--set judge.llm.model=J` (the key a grpo recipe uses) names the model rlctl judge
    sends to the judge endpoint, as `--model` does."""
    _write(tmp_path)
    with ChatServer(models=("J",)) as server:
        r = rlctl(
            "judge", "-i", "r.jsonl", "--judge", "llm",
            "--set", "judge.llm.model=J", "--set", f"judge.llm.base_url={server.url}",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert {req["model"] for req in server.requests} == {"J"}
    (row,) = sql("SELECT config FROM runs WHERE command = 'judge'")
    assert row["config"]["judge"]["llm"]["model"] == "J"
