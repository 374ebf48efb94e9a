"""`llm` against a real HTTP server: scores, retries on 429/5xx, the cache, no key stored."""

from __future__ import annotations

import socket
from pathlib import Path

import orjson

from tests.chat_server import ChatServer
from tests.conftest import Runner, jsonl

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
