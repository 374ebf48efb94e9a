"""`rlctl data mix`: weighted mixtures on the bundled GSM8K and MBPP samples and generated sums,
exact realised counts recorded in the run, and a curriculum order that survives `train`."""

from __future__ import annotations

import collections
from pathlib import Path

import orjson

from tests.conftest import Runner, jsonl, stages, stored

MIX = ("data", "mix", "gsm8k=0.5", "mbpp=0.3", "synth:arith=0.2", "--sample", "--total", "20000")


def _run(store: Path, stderr: bytes) -> dict:
    rid = stderr.decode().rsplit("(run ", 1)[1].split(")")[0]
    return orjson.loads((store / "runs" / rid / "run.json").read_bytes())


def test_a_three_source_mix_lands_on_its_weights(rlctl: Runner, store: Path, tmp_path: Path):
    """0.5/0.3/0.2 over 20,000: the counts are the shares (within 1%, here exact), every record
    says its source, repeats of a small source get unique ids, the run records the realised
    counts; the same mixture as a YAML file gives the same records."""
    short = rlctl(*MIX)
    assert short.returncode == 2
    assert "gsm8k: 200 records, its share is 10000; pass --replace" in short.stderr.decode()

    r = rlctl(*MIX, "--replace", "--seed", "3")
    assert r.returncode == 0, r.stderr.decode()
    records = jsonl(r.stdout)
    counts = collections.Counter(rec["meta"]["mix"]["source"] for rec in records)
    for name, weight in {"gsm8k": 0.5, "mbpp": 0.3, "synth:arith": 0.2}.items():
        assert abs(counts[name] / 20000 - weight) <= 0.01 * weight, counts
    assert collections.Counter(rec["source"] for rec in records) == {
        "gsm8k": 10000, "mbpp": 6000, "arith": 4000,
    }  # fmt: skip
    assert len({rec["id"] for rec in records}) == 20000
    run = _run(store, r.stderr)
    table = {row["source"]: row for row in run["mix"]}
    assert table["gsm8k"]["records"] == 10000 and table["gsm8k"]["available"] == 200
    assert table["synth:arith"]["passes"] == 1 and table["mbpp"]["passes"] == 120
    # the first 2,000 records already hold the weights: shuffled, not concatenated
    head = collections.Counter(rec["meta"]["mix"]["source"] for rec in records[:2000])
    assert abs(head["gsm8k"] / 2000 - 0.5) < 0.05, head

    mixture = tmp_path / "mixture.yaml"
    mixture.write_text(
        "sources: [gsm8k=0.5, mbpp=0.3, synth:arith=0.2]\n"
        "total: 20000\nseed: 3\nreplace: true\nsample: true\n"
    )
    again = rlctl("data", "mix", "-c", str(mixture))
    assert again.returncode == 0
    strip = lambda recs: [{k: v for k, v in x.items() if k != "run_id"} for x in recs]  # noqa: E731
    assert strip(jsonl(again.stdout)) == strip(records)
    valid = rlctl(shell=f"$RLCTL data mix -c {mixture} | $RLCTL data validate --kind prompt")
    assert valid.returncode == 0 and "20000 valid prompt records" in valid.stderr.decode()


def test_an_ordered_mix_reaches_the_trainer_in_its_order(
    rlctl: Runner, store: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """--order NAME=FILE: the trainer sees the prompts in the file's order. GRPO with one
    prompt per step logs each step's prompt id (train_samples); TRL would shuffle them, and
    rlctl keeps an ordered mix's order unless told --no-keep-order."""
    pulled = jsonl(rlctl("data", "pull", "gsm8k", "--sample", "--limit", "40").stdout)
    order = [pulled[i]["id"] for i in (17, 3, 29, 8, 36, 0)]
    (tmp_path / "order.txt").write_text("# easiest first\n" + "\n".join(order) + "\n")
    r = stages(
        rlctl,
        f"data mix gsm8k=1 --sample --total 6 --order gsm8k={tmp_path}/order.txt",
        f"train grpo --model {tiny_model} --reward math --max-steps 6 --log-every 1 "
        "--set trainer.per_device_train_batch_size=2 --set trainer.num_generations=2 "
        "--set trainer.max_completion_length=4",
    )
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    assert "ordered mix" in r.stderr.decode()
    runs = sorted((store / "runs").glob("*train-grpo*"))
    run = orjson.loads((runs[-1] / "run.json").read_bytes())
    assert run["config"]["keep_order"] is True
    assert run["config"]["trainer"]["shuffle_dataset"] is False
    (samples,) = [a for a in run["artifacts"] if a["kind"] == "train_sample"]
    seen = stored(store / samples["path"])
    by_step = [rec["id"] for rec in sorted(seen, key=lambda x: x["step"])][::2]
    assert by_step == order


def test_a_mix_replays_from_its_record(rlctl: Runner, store: Path) -> None:
    """`runs show --replay` prints the mix with its sources as arguments, a `latest:` source
    pinned to the run it read; run again, it gives the same records (whose `meta.mix.source`
    names the source as given: the pinned reference instead of `latest:`)."""
    assert rlctl("data", "pull", "gsm8k", "--sample", "--limit", "10").returncode == 0
    first = rlctl("data", "mix", "latest:prompts=0.5", "mbpp=0.5", "--sample", "--total", "12",
                  "--seed", "4")  # fmt: skip
    assert first.returncode == 0, first.stderr.decode()
    rid = first.stderr.decode().rsplit("(run ", 1)[1].split(")")[0]
    line = rlctl("runs", "show", rid, "--replay").stdout.decode().strip()
    assert line.startswith("rlctl data mix 20") and ":prompts=0.5 mbpp=0.5" in line, line
    assert (
        rlctl("data", "pull", "gsm8k", "--sample", "--limit", "3").returncode == 0
    )  # a newer latest
    again = rlctl(shell=line.replace("rlctl", "$RLCTL", 1))
    assert again.returncode == 0, again.stderr.decode()

    def same(recs: list[dict]) -> list[dict]:
        for x in recs:
            x.pop("run_id")
            x["meta"]["mix"]["source"] = x["meta"]["mix"]["source"].split(":")[-1]
        return recs

    assert same(jsonl(again.stdout)) == same(jsonl(first.stdout))
