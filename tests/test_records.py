"""Record IO: formats round-trip, sources stream, and bad input fails on one located line."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import orjson
import pytest

from rlctl.errors import BadInput
from rlctl.records import RecordReader, RecordWriter, validate
from rlctl.records.schema import KINDS
from tests.conftest import Runner

PROMPTS = [
    {"id": "a", "messages": [{"role": "user", "content": "2+3?"}], "reference": "5"},
    {"id": 7, "prompt": "plain", "reference": ["assert f() == 1"], "meta": {"k": [1, {"x": None}]}},
    {"id": "c", "prompt": "p", "reference": 12.5, "source": "s", "meta": {"k": "v"}},
]


@pytest.mark.parametrize("suffix", ["jsonl", "jsonl.gz", "parquet"])
def test_every_format_round_trips_exactly(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"p.{suffix}"
    with RecordWriter(path) as w:
        w.write_all(PROMPTS)
    assert path.exists() and not list(tmp_path.glob(".*tmp"))
    assert list(RecordReader([path], "prompt")) == PROMPTS


JUDGED_NULLS = [
    {
        "id": "a",
        "prompt": "p",
        "completion": "c",
        "reward": None,
        "verdict": {"reason": "unreadable"},
    },
    {"id": "b", "prompt": "p", "completion": "c", "reward": 1.0},
    {"id": "c", "prompt": "p", "completion": "c", "reward": 0.5, "verdict": None, "meta": {}},
]


def test_parquet_stores_values_as_written_not_as_guessed(tmp_path: Path) -> None:
    """A column of date-like strings stays strings (type inference would make it DATE and
    the record would fail its own check), digits in a string stay a string, and an empty
    artifact is an empty, readable file."""
    recs = [
        {"id": "a", "prompt": "When?", "reference": "2024-01-01", "source": "00123"},
        {"id": "b", "prompt": "When?", "reference": "2024-02-03", "source": "007"},
    ]
    path = tmp_path / "p.parquet"
    with RecordWriter(path) as w:
        w.write_all(recs)
    assert list(RecordReader([path], "prompt")) == recs
    empty = tmp_path / "e.parquet"
    RecordWriter(empty).close()
    import duckdb

    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{empty}')").fetchall() == [(0,)]


def test_parquet_keeps_a_null_apart_from_an_absent_key(tmp_path: Path) -> None:
    """The store keeps artifacts as Parquet, where every row has every column: a judge's
    `reward: null` (no verdict) must read back as null, and a key a record did not have must
    stay absent, not turn into a null."""
    path = tmp_path / "j.parquet"
    with RecordWriter(path) as w:
        w.write_all(JUDGED_NULLS)
    assert list(RecordReader([path])) == JUDGED_NULLS


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_a_writer_killed_midway_leaves_only_hidden_tmp_files(tmp_path: Path, suffix: str) -> None:
    """What a kill -9 leaves behind is hidden and ends in .tmp, the names `store gc` removes
    (a Parquet artifact streams JSONL first: that file too)."""
    w = RecordWriter(tmp_path / f"p.{suffix}")
    w.write(PROMPTS[0])
    w.flush()
    left = [p.name for p in tmp_path.iterdir()]
    assert left and all(n.startswith(".") and n.endswith(".tmp") for n in left), left
    w.close()


def test_a_failed_writer_leaves_only_a_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    with pytest.raises(RuntimeError), RecordWriter(path) as w:
        w.write(PROMPTS[0])
        assert not path.exists()  # nothing under the final name while writing
        raise RuntimeError("boom")
    assert not path.exists()
    assert (tmp_path / "p.jsonl.partial").exists()


def test_globs_and_gzip_detected_by_content(tmp_path: Path) -> None:
    for i in range(3):
        with RecordWriter(tmp_path / f"part-{i}.jsonl") as w:
            w.write({**PROMPTS[0], "id": str(i)})
    disguised = tmp_path / "part-9.jsonl"  # gzip bytes behind a .jsonl name
    disguised.write_bytes(gzip.compress(orjson.dumps({**PROMPTS[0], "id": "9"}) + b"\n"))
    reader = RecordReader([str(tmp_path / "part-*.jsonl")], "prompt")
    assert [r["id"] for r in reader] == ["0", "1", "2", "9"]


def test_stdin_stream_collects_parent_run_ids() -> None:
    lines = b"".join(orjson.dumps({**PROMPTS[0], "run_id": r}) + b"\n" for r in ("r1", "r2", "r1"))
    seen: list[set[str]] = []
    reader = RecordReader(["-"], "prompt", stdin=io.BytesIO(lines), on_stdin_eof=seen.append)
    assert len(list(reader)) == 3
    assert reader.parent_run_ids == {"r1", "r2"} and seen == [{"r1", "r2"}]


def test_reader_is_lazy(tmp_path: Path) -> None:
    """A bad line 3 is not reached when only two records are consumed: reading streams."""
    path = tmp_path / "p.jsonl"
    path.write_bytes(orjson.dumps(PROMPTS[0]) + b"\n" + orjson.dumps(PROMPTS[2]) + b"\n{bad\n")
    it = iter(RecordReader([path], "prompt"))
    assert next(it)["id"] == "a" and next(it)["id"] == "c"
    with pytest.raises(BadInput, match=r"p\.jsonl:3"):
        next(it)


@pytest.mark.parametrize(
    ("kind", "record", "field"),
    [
        ("prompt", {"id": "x"}, "messages/prompt"),
        ("prompt", {"id": "x", "messages": []}, "messages"),
        ("prompt", {"id": True, "prompt": "p"}, "id"),
        ("pair", {"id": "x", "prompt": "p", "chosen": "a"}, "rejected"),
        ("rollout", {"id": "x", "prompt": "p", "completion": 3}, "completion"),
        (
            "rollout",
            {"id": "x", "prompt": "p", "completion": "c", "completion_logprobs": ["a"]},
            "completion_logprobs",
        ),
        ("judged", {"id": "x", "prompt": "p", "completion": "c", "judge": "math"}, "reward"),
    ],
)
def test_validation_names_the_field(kind: str, record: dict, field: str) -> None:
    problem = validate(record, KINDS[kind])
    assert problem is not None and problem[0] == field


def test_null_optional_fields_count_as_absent() -> None:
    assert (
        validate({"id": "x", "prompt": None, "messages": PROMPTS[0]["messages"]}, KINDS["prompt"])
        is None
    )
    assert (
        validate({"id": "x", "prompt": "p", "completion": None}, KINDS["rollout"])[0]
        == "completion"
    )


def test_valid_records_of_every_kind() -> None:
    base = {"id": "x", "messages": [{"role": "user", "content": "q"}]}
    rollout = {**base, "completion": "c", "sample": 0, "completion_token_ids": [1, 2]}
    assert validate(base, KINDS["prompt"]) is None
    assert (
        validate(
            {**base, "chosen": "a", "rejected": [{"role": "assistant", "content": "b"}]},
            KINDS["pair"],
        )
        is None
    )
    assert validate(rollout, KINDS["rollout"]) is None
    assert validate({**rollout, "reward": None, "judge": "code"}, KINDS["judged"]) is None


GOOD = b'{"id": "a", "messages": [{"role": "user", "content": "hi"}]}\n'
MALFORMED = {
    "truncated-line": (GOOD + b'{"id": "b", "messages": [{"role": "us', "bad.jsonl:2", "truncated"),
    "wrong-type": (GOOD + b'{"id": "b", "messages": "hi"}\n', "bad.jsonl:2", "'messages'"),
    "missing-field": (
        GOOD * 2 + b'{"messages": [{"role": "user", "content": "x"}]}\n',
        "bad.jsonl:3",
        "'id'",
    ),
    "empty-file": (b"", "bad.jsonl", "empty"),
    "binary-garbage": (bytes(range(256)) * 4, "bad.jsonl:1", "UTF-8"),
    "not-an-object": (GOOD + b"[1, 2]\n", "bad.jsonl:2", "JSON object"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_input_is_one_line_exit_2(rlctl: Runner, sql, tmp_path: Path, case: str) -> None:
    data, where, what = MALFORMED[case]
    (tmp_path / "bad.jsonl").write_bytes(data)
    r = rlctl("data", "validate", "-i", "bad.jsonl", "--kind", "prompt")
    assert r.returncode == 2
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert where in lines[0] and what in lines[0], lines[0]
    assert "Traceback" not in r.stderr.decode()
    assert sql("SELECT status FROM runs") == [{"status": "failed"}]


def test_truncated_gzip_is_reported(rlctl: Runner, tmp_path: Path) -> None:
    whole = gzip.compress(GOOD * 2000)
    (tmp_path / "cut.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    r = rlctl("data", "validate", "-i", "cut.jsonl.gz", "--kind", "prompt")
    assert r.returncode == 2 and "cut.jsonl.gz:" in r.stderr.decode()
    assert len(r.stderr.decode().strip().splitlines()) == 1


def test_missing_input_file_and_empty_glob(rlctl: Runner) -> None:
    r = rlctl("data", "validate", "-i", "nope.jsonl", "--kind", "prompt")
    assert r.returncode == 2 and "nope.jsonl" in r.stderr.decode()
    r = rlctl("data", "validate", "-i", "none-*.jsonl", "--kind", "prompt")
    assert r.returncode == 2 and "no file matches" in r.stderr.decode()


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_a_fifo_target_is_written_in_place_not_replaced(tmp_path: Path, suffix: str) -> None:
    """`-o /dev/stdout` or a named pipe: renaming over it would replace the node itself."""
    import stat
    import threading

    fifo = tmp_path / f"out.{suffix}"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    with RecordWriter(fifo) as w:
        w.write_all(PROMPTS)
    reader.join(timeout=30)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    if suffix == "jsonl":
        assert [orjson.loads(x) for x in got[0].splitlines()] == PROMPTS
    else:
        assert got[0][:4] == b"PAR1"
    assert sorted(p.name for p in tmp_path.iterdir()) == [fifo.name]


def test_docs_records_md_matches_the_schema() -> None:
    from rlctl.records.docs import render
    from tests.conftest import ROOT

    assert (ROOT / "docs" / "records.md").read_text() == render(), (
        "docs/records.md is stale: python -m rlctl.records.docs > docs/records.md"
    )
