"""`rlctl data pull`: the must-show counts on the real upstream files, and every source path."""

from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
import pytest

from tests.conftest import FIXTURES, Runner, jsonl, shared


def test_gsm8k_full_test_file(rlctl: Runner, sql) -> None:
    src = shared("gsm8k/test.jsonl")
    r = rlctl(shell=f"$RLCTL data pull gsm8k --from {src} | wc -l")
    assert r.returncode == 0 and r.stdout.decode().strip() == "1319"
    out = rlctl("data", "pull", "gsm8k", "--from", str(src))
    records = jsonl(out.stdout)
    upstream = [json.loads(line) for line in src.read_text().splitlines()]
    assert len(records) == 1319
    for rec, row in zip(records, upstream, strict=True):
        assert {"id", "messages", "reference", "run_id"} <= rec.keys()
        assert rec["reference"] == re.search(r"####\s*(.+)$", row["answer"]).group(1).strip()
        assert rec["messages"] == [{"role": "user", "content": row["question"]}]
    assert records[0]["reference"] == "18" and records[0]["meta"]["split"] == "test"
    (row,) = sql(f"SELECT count(*) AS n FROM prompts WHERE run_id = '{records[0]['run_id']}'")
    assert row["n"] == 1319


def test_gsm8k_bundled_sample_works_offline(rlctl: Runner, sql) -> None:
    r = rlctl("data", "pull", "gsm8k", "--sample")
    assert r.returncode == 0, r.stderr
    records = jsonl(r.stdout)
    assert len(records) == 200 and records[0]["id"] == "gsm8k/test/0"
    assert sql("SELECT command, status FROM runs") == [{"command": "data pull", "status": "ok"}]
    assert sql("SELECT count(*) AS n FROM prompts") == [{"n": 200}]
    (art,) = sql("SELECT kind, records, complete FROM artifacts")
    assert art == {"kind": "prompt", "records": 200, "complete": True}


def test_hh_rlhf_full_test_file(rlctl: Runner, sql) -> None:
    src = shared("hh-rlhf/helpful-base-test.jsonl.gz")
    r = rlctl("data", "pull", "hh-rlhf", "--from", str(src))
    assert r.returncode == 0, r.stderr
    pairs = jsonl(r.stdout)
    assert len(pairs) == 2354
    assert sum(not p["meta"]["prefix_match"] for p in pairs) == 9
    assert sql("SELECT count(*) AS n FROM pairs") == [{"n": 2354}]


def test_hh_rlhf_split_at_last_assistant_turn(rlctl: Runner) -> None:
    pairs = jsonl(rlctl("data", "pull", "hh-rlhf", "--sample").stdout)
    assert len(pairs) == 100
    for p in pairs:
        assert p["messages"][-1]["role"] == "user"
        assert isinstance(p["chosen"], str) and isinstance(p["rejected"], str)
        assert p["meta"]["prefix_match"]
    assert pairs[0]["meta"]["split"] == "test"


def test_hh_rlhf_rows_whose_prefixes_differ(rlctl: Runner) -> None:
    src = FIXTURES / "hh-rlhf-diverging.jsonl"
    pairs = jsonl(rlctl("data", "pull", "hh-rlhf", "--from", str(src)).stdout)
    rows = [json.loads(line) for line in src.read_text().splitlines()]
    assert len(pairs) == len(rows) == 9
    for p, row in zip(pairs, rows, strict=True):
        assert not p["meta"]["prefix_match"]
        # the prompt is history both transcripts share
        text = "".join(
            f"\n\n{'Human' if m['role'] == 'user' else 'Assistant'}: " for m in p["messages"]
        )
        assert text  # non-empty
        first = p["messages"][0]["content"]
        assert first in row["chosen"] and first in row["rejected"]
        assert p["chosen"] != p["rejected"]


def test_mbpp_sample_and_splits(rlctl: Runner) -> None:
    records = jsonl(rlctl("data", "pull", "mbpp", "--sample").stdout)
    assert len(records) == 50 and records[0]["id"] == "mbpp/11"
    assert records[0]["reference"].count("assert ") == 3
    assert records[0]["reference"].splitlines()[0] in records[0]["messages"][0]["content"]
    full = shared("mbpp/mbpp.jsonl")
    counts = {
        split: len(
            jsonl(rlctl("data", "pull", "mbpp", "--from", str(full), "--split", split).stdout)
        )
        for split in ("test", "train", "validation", "prompt")
    }
    assert counts == {"test": 500, "train": 374, "validation": 90, "prompt": 10}


def test_limit_shuffle_seed(rlctl: Runner) -> None:
    ids = lambda *a: [r["id"] for r in jsonl(rlctl("data", "pull", "gsm8k", "--sample", *a).stdout)]  # noqa: E731
    assert ids("--limit", "3") == ["gsm8k/test/0", "gsm8k/test/1", "gsm8k/test/2"]
    a = ids("--shuffle", "--seed", "1", "--limit", "5")
    assert a == ids("--shuffle", "--seed", "1", "--limit", "5")
    assert a != ids("--shuffle", "--seed", "2", "--limit", "5")
    assert a != ids("--limit", "5")
    assert ids("--limit", "0") == []


def test_parquet_artifact_lands_in_the_view(rlctl: Runner, sql, tmp_path: Path) -> None:
    r = rlctl("data", "pull", "hh-rlhf", "--sample", "--format", "parquet", "-o", "copy.parquet")
    assert r.returncode == 0, r.stderr
    assert sql("SELECT format FROM artifacts") == [{"format": "parquet"}]
    assert sql("SELECT count(*) AS n FROM pairs") == [{"n": 100}]
    v = rlctl("data", "validate", "-i", "copy.parquet", "--kind", "pair")
    assert v.returncode == 0 and b"100 valid pair records" in v.stderr


def test_generic_file_with_field_mapping(rlctl: Runner, tmp_path: Path) -> None:
    (tmp_path / "qa.csv").write_text(
        "q,a,topic\nWhat is 2+2?,4,math\nCapital of France?,Paris,geo\n"
    )
    r = rlctl(
        "data",
        "pull",
        "my-qa",
        "--from",
        "qa.csv",
        "--field",
        "prompt=q",
        "--field",
        "reference=a",
        "--field",
        "meta.topic=topic",
    )
    assert r.returncode == 0, r.stderr
    recs = jsonl(r.stdout)
    assert [(x["prompt"], x["reference"], x["meta"]["topic"]) for x in recs] == [
        ("What is 2+2?", "4", "math"),
        ("Capital of France?", "Paris", "geo"),
    ]
    bad = rlctl("data", "pull", "my-qa", "--from", "qa.csv", "--field", "prompt=question")
    assert bad.returncode == 2 and "qa.csv:2: column 'question'" in bad.stderr.decode()


def test_generic_guesses_columns_and_pairs(rlctl: Runner, tmp_path: Path) -> None:
    (tmp_path / "prefs.jsonl").write_text(
        json.dumps({"question": "q", "chosen": "good", "rejected": "bad"}) + "\n"
    )
    (rec,) = jsonl(rlctl("data", "pull", "prefs", "--from", "prefs.jsonl").stdout)
    assert (rec["prompt"], rec["chosen"], rec["rejected"]) == ("q", "good", "bad")


def test_hub_path_with_the_download_mocked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The hub download is the one thing that cannot run here; everything after it is real."""
    import datasets
    from click.testing import CliRunner

    from rlctl.cli import main

    calls = []

    def fake_load(hub_id, split=None, streaming=False, **kw):
        calls.append((hub_id, split, streaming, kw))
        return datasets.Dataset.from_list(
            [{"question": f"q{i}", "answer": f"work\n#### {i}"} for i in range(5)]
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    res = CliRunner().invoke(
        main, ["--store", str(tmp_path / "s"), "data", "pull", "gsm8k", "--limit", "3", "-o", "-"]
    )
    assert res.exit_code == 0, res.output
    recs = jsonl(res.stdout)
    assert [r["reference"] for r in recs] == ["0", "1", "2"]
    assert calls == [("openai/gsm8k", "train", True, {"name": "main"})]


@pytest.mark.parametrize("name", ["gsm8k", "someorg/some-dataset"])
def test_hub_unreachable_is_one_line_pointing_at_from(rlctl: Runner, name: str) -> None:
    r = rlctl("data", "pull", name)
    assert r.returncode == 2
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "--from" in lines[0], lines


def test_unknown_dataset_and_bad_options(rlctl: Runner, tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n')
    for args, msg in [
        (["nonsense"], "unknown dataset"),
        (["gsm8k", "--sample", "--split", "train"], "only the test split"),
        (["gsm8k", "--sample", "--from", "x.jsonl"], "exclude each other"),
        (["gsm8k", "--from", "missing.jsonl"], "no such file"),
        (["gsm8k", "--sample", "--field", "prompt=x"], "fields are fixed"),
        (["gsm8k", "--sample", "--limit", "-1"], "-1 is not in the range x>=0"),
    ]:
        r = rlctl("data", "pull", *args)
        assert r.returncode == 2 and msg in r.stderr.decode(), (args, r.stderr)


def test_wrong_dataset_file_names_the_row(rlctl: Runner, tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_text('{"question": "q", "answer": "a\\n#### 1"}\n{"q": 1}\n')
    r = rlctl("data", "pull", "gsm8k", "--from", "x.jsonl")
    assert r.returncode == 2
    assert "x.jsonl:2: field 'question': missing" in r.stderr.decode()


def _hh_rows(n: int, start: int = 0) -> str:
    import gzip

    from rlctl.data import SAMPLES

    with gzip.open(SAMPLES / "hh-rlhf-helpful-base-test.jsonl.gz", "rt") as f:
        lines = f.read().splitlines()
    return "\n".join(lines[start : start + n]) + "\n"


def test_several_from_files_mix_with_distinct_ids_and_their_own_splits(
    rlctl: Runner, sql, tmp_path: Path
) -> None:
    """`--from A --from B` kept only B; helpful and harmless pulls both gave `hh-rlhf/test/0..`
    (which corrupts `--pairs` grouping when mixed); a glob over test files said `train`."""
    data = tmp_path / "hh"
    data.mkdir()
    (data / "helpful-base-test.jsonl").write_text(_hh_rows(3))
    (data / "harmless-base-test.jsonl").write_text(_hh_rows(2, start=3))
    r = rlctl(
        "data", "pull", "hh-rlhf",
        "--from", "hh/helpful-base-test.jsonl", "--from", "hh/harmless-base-test.jsonl",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    pairs = jsonl(r.stdout)
    assert [p["id"] for p in pairs] == [
        *(f"hh-rlhf/helpful-base/test/{i}" for i in range(3)),
        *(f"hh-rlhf/harmless-base/test/{i}" for i in range(2)),
    ]
    assert [p["meta"]["file"] for p in pairs] == ["helpful-base-test.jsonl"] * 3 + [
        "harmless-base-test.jsonl"
    ] * 2
    edges = sql("SELECT input FROM lineage WHERE via = 'file' ORDER BY input")
    assert [Path(e["input"]).name for e in edges] == [
        "harmless-base-test.jsonl",
        "helpful-base-test.jsonl",
    ]
    # one pull per subset: the ids still differ, so the two can be mixed later
    one = jsonl(rlctl("data", "pull", "hh-rlhf", "--from", "hh/harmless-base-test.jsonl").stdout)
    assert one[0]["id"] == "hh-rlhf/harmless-base/test/0"

    glob = jsonl(rlctl("data", "pull", "hh-rlhf", "--from", "hh/*-test.jsonl").stdout)
    assert len(glob) == 5 and {p["meta"]["split"] for p in glob} == {"test"}
    (run,) = sql("SELECT config->>'split' AS split FROM runs ORDER BY started_at DESC LIMIT 1")
    assert run["split"] == "test"

    twice = rlctl(
        "data", "pull", "hh-rlhf",
        "--from", "hh/helpful-base-test.jsonl", "--from", "hh/helpful-base-test.jsonl",
    )  # fmt: skip
    assert twice.returncode == 2
    assert "also came from" in twice.stderr.decode()


def test_several_generic_files_number_on(rlctl: Runner, tmp_path: Path) -> None:
    (tmp_path / "a-train.jsonl").write_text('{"q": "1"}\n{"q": "2"}\n')
    (tmp_path / "b-test.jsonl").write_text('{"q": "3"}\n')
    r = rlctl(
        "data", "pull", "mine", "--from", "a-train.jsonl", "--from", "b-test.jsonl",
        "--field", "prompt=q",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    recs = jsonl(r.stdout)
    assert [(x["id"], x["meta"]["split"]) for x in recs] == [
        ("mine/train/0", "train"),
        ("mine/train/1", "train"),
        ("mine/test/2", "test"),
    ]


def test_synthetic_arithmetic_is_deterministic_held_out_and_scored_by_math(
    rlctl: Runner, tmp_path: Path
) -> None:
    """`synth:arith` (issue 13's learning task): generated, the same on every machine, a test
    split disjoint from train, references the `math` judge checks."""
    train = jsonl(rlctl("data", "pull", "synth:arith").stdout)
    test = jsonl(rlctl("data", "pull", "synth:arith", "--split", "test").stdout)
    again = jsonl(rlctl("data", "pull", "synth:arith", "--split", "test").stdout)
    assert (len(train), len(test)) == (7600, 500)
    assert [r["id"] for r in test] == [r["id"] for r in again]
    assert not {r["id"] for r in train} & {r["id"] for r in test}
    for r in test[:50]:
        assert int(r["reference"]) == r["meta"]["a"] + r["meta"]["b"]
    # the worked columns are right: every `x+y(+c)=z` line adds up, and the carry used in the
    # tens line is the ones line's tens digit
    for r in train + test:
        assert r["prompt"] == f"{r['meta']['a']}+{r['meta']['b']}\n" and "messages" not in r
        *lines, answer = r["meta"]["solution"].split("\n")
        sums = [[int(t) for t in line.replace("=", "+").split("+")] for line in lines]
        assert all(sum(terms[:-1]) == terms[-1] for terms in sums), r["meta"]["solution"]
        (a1, b1, ones), (a10, b10, carry, tens) = sums
        assert (a1, b1, a10, b10) == (r["meta"]["a"] % 10, r["meta"]["b"] % 10,
                                      r["meta"]["a"] // 10, r["meta"]["b"] // 10)  # fmt: skip
        assert (
            carry == ones // 10 and answer == f"#### {tens}{ones % 10}" == f"#### {r['reference']}"
        )
    rollouts = tmp_path / "r.jsonl"
    rollouts.write_bytes(
        b"".join(
            orjson.dumps(
                {**r, "completion": r["meta"]["solution"] if i % 2 else "#### 7", "sample": 0}
            )
            + b"\n"
            for i, r in enumerate(test[:10])
        )
    )
    judged = jsonl(rlctl("judge", "--judge", "math", "-i", str(rollouts)).stdout)
    assert [j["reward"] for j in judged] == [0.0, 1.0] * 5
    bad = rlctl("data", "pull", "synth:arith", "--sample")
    assert bad.returncode == 2 and "is generated" in bad.stderr.decode()
