"""`rm`: a real (tiny, random) sequence-classification model scoring records in batches."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from rlctl.backends.judges.rm import RewardModelJudge
from tests.conftest import Runner, jsonl
from tests.tiny_models import tiny_reward_model

RECORDS = [
    {
        "id": f"r{i}",
        "messages": [{"role": "user", "content": "How many eggs? " * (1 + i % 4)}],
        "completion": "There are " + "many " * i + "eggs.",
        "sample": 0,
    }
    for i in range(7)
]


@pytest.fixture(scope="module")
def rm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_reward_model(tmp_path_factory.mktemp("rm"))


def test_scores_do_not_depend_on_the_batch(rm_path: Path) -> None:
    batched = RewardModelJudge(str(rm_path), batch_size=4).score(RECORDS)
    alone = RewardModelJudge(str(rm_path), batch_size=1).score(RECORDS)
    assert [s for s, _ in batched] == pytest.approx([s for s, _ in alone], abs=1e-4)
    assert len({round(s, 4) for s, _ in batched}) > 1  # it is scoring the text, not a constant


def test_chat_template_is_used(rm_path: Path) -> None:
    judge = RewardModelJudge(str(rm_path))
    assert judge.text(RECORDS[0]).startswith("<|im_start|>user\n")
    assert judge.text({"prompt": "Q: ", "completion": "A"}) == "Q: A"


def test_rm_through_the_cli(rlctl: Runner, rm_path: Path, tmp_path: Path) -> None:
    (tmp_path / "r.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in RECORDS))
    r = rlctl(
        "judge", "-i", "r.jsonl", "--judge", "rm", "--rm-model", str(rm_path), "--batch-size", "3"
    )
    assert r.returncode == 0, r.stderr
    judged = jsonl(r.stdout)
    expected = [s for s, _ in RewardModelJudge(str(rm_path)).score(RECORDS)]
    assert [j["reward"] for j in judged] == pytest.approx(expected, abs=1e-4)
    bad = rlctl("judge", "-i", "r.jsonl", "--judge", "rm", "--rm-model", str(tmp_path / "nope"))
    assert bad.returncode == 2 and "no such directory" in bad.stderr.decode()
