"""`rlctl eval` on the real lm-evaluation-harness, offline, with tiny models whose right answers
are known: one over-fitted on four GSM8K items (scores 1.0) and one with random weights (0.0)."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from rlctl.data import SAMPLES
from tests.conftest import Runner, jsonl, stages
from tests.tiny_models import overfit

ROOT = Path(__file__).resolve().parents[1]
N = 4
GEN = ("--gen-kwargs", "max_gen_toks=16")


def _docs(n: int = N) -> list[dict]:
    return [orjson.loads(x) for x in (SAMPLES / "gsm8k-test.jsonl").read_bytes().splitlines()[:n]]


@pytest.fixture(scope="module")
def fitted(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trained to answer lm-eval's 0-shot gsm8k prompt for the first four sample items with
    ` #### ANSWER` and stop: exactly what strict-match accepts."""
    examples = [
        (f"Question: {d['question']}\nAnswer:", " #### " + d["answer"].split("####")[-1].strip())
        for d in _docs()
    ]
    return overfit(tiny_model, examples, tmp_path_factory.mktemp("fit") / "model", steps=150)


def _eval(rlctl: Runner, model: Path, *args: str) -> tuple[str, list[dict]]:
    r = rlctl("eval", "gsm8k", "--model", str(model), "--shots", "0", *GEN, *args, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    samples = jsonl(r.stdout)
    return samples[0]["run_id"], samples


def test_overfit_scores_one_random_scores_zero_and_judge_agrees(
    rlctl: Runner, sql, tiny_model: Path, fitted: Path
) -> None:
    pull = rlctl("data", "pull", "gsm8k", "--sample", "--limit", str(N))
    assert pull.returncode == 0, pull.stderr.decode()
    fit_run, fit_samples = _eval(rlctl, fitted, "--data", "latest:data-pull")
    rand_run, _ = _eval(rlctl, tiny_model, "--data", "latest:data-pull")

    scores = {
        (r["run_id"], r["filter"]): r["value"]
        for r in sql("SELECT run_id, filter, value FROM evals WHERE task = 'gsm8k'")
    }
    assert scores == {
        (fit_run, "strict-match"): 1.0,
        (fit_run, "flexible-extract"): 1.0,
        (rand_run, "strict-match"): 0.0,
        (rand_run, "flexible-extract"): 0.0,
    }
    # Per-sample outputs keep the pulled record's id and reference, and lineage to the pull.
    pulled = sql("SELECT id, reference FROM prompts")
    assert {(s["id"], s["reference"]) for s in fit_samples} == {
        (p["id"], p["reference"]) for p in pulled
    }
    assert all(s["completion"].startswith(" #### ") for s in fit_samples)
    (pull_run,) = sql("SELECT run_id FROM runs WHERE command = 'data pull'")
    parents = sql(f"SELECT parent_run_id, via, input FROM lineage WHERE run_id = '{fit_run}'")
    assert {p["parent_run_id"] for p in parents if p["via"] != "model"} == {pull_run["run_id"]}
    # the model is an input too (built outside any run here, so it names no parent run)
    assert [p["input"] for p in parents if p["via"] == "model"] == [str(fitted.resolve())]

    # Re-judged by rlctl's strict math judge: the same accuracy as lm-eval's strict-match.
    for run in (fit_run, rand_run):
        j = rlctl("judge", "-i", f"{run}:samples", "--judge", "math", "--mode", "strict")
        assert j.returncode == 0, j.stderr.decode()
        rewards = [x["reward"] for x in jsonl(j.stdout)]
        assert len(rewards) == N
        assert sum(rewards) / N == scores[(run, "strict-match")]

    rows = sql("SELECT DISTINCT run_id, model, backend, shots, samples, data FROM evals")
    assert {r["run_id"] for r in rows} == {fit_run, rand_run}
    for r in rows:
        assert r["backend"] == "hf" and r["shots"] == 0 and r["samples"] == N
        assert r["data"].startswith("store:") and f"{N} docs, sha256" in r["data"]


def test_native_columns_file_and_the_generated_task_yaml(
    rlctl: Runner, sql, fitted: Path, tmp_path: Path
) -> None:
    data = tmp_path / "gsm8k-test.jsonl"
    data.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in _docs()))
    run, samples = _eval(rlctl, fitted, "--data", str(data), "--limit", "2")
    assert [s["id"] for s in samples] == ["gsm8k/0", "gsm8k/1"]
    assert [s["reference"] for s in samples] == ["18", "3"]  # the number after ####
    (row,) = sql(f"SELECT data FROM evals WHERE run_id = '{run}' AND filter = 'strict-match'")
    assert row["data"].startswith(f"file:{data} ({N} docs")
    # The task file is lm-eval's own gsm8k, re-pointed at the data (an artifact of the run).
    (art,) = sql(f"SELECT path FROM artifacts WHERE run_id = '{run}' AND name = 'task'")
    yaml_text = (tmp_path / "store" / art["path"] / "gsm8k.yaml").read_text()
    assert "lm_eval/tasks/gsm8k/gsm8k.yaml" in yaml_text and "dataset_path: json" in yaml_text


def test_pipe_into_judge(rlctl: Runner, fitted: Path, tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in _docs()))
    r = stages(  # eval's records are what judge reads (the stages in the worker, as a pipe)
        rlctl,
        f"eval gsm8k --model {fitted} --shots 0 --data {data} --gen-kwargs max_gen_toks=16",
        "judge --judge math --mode strict",
    )
    assert r.returncode == 0, r.stderr.decode()
    assert [x["reward"] for x in jsonl(r.stdout)] == [1.0] * N


def test_offline_without_data_says_how_to_get_it(rlctl: Runner, tiny_model: Path) -> None:
    r = rlctl("eval", "gsm8k", "--model", str(tiny_model))
    assert r.returncode == 2
    line = r.stderr.decode().strip().splitlines()[-1]
    assert "hub is unreachable" in line and "rlctl data pull gsm8k --split test" in line


def test_offline_never_scores_a_sample_as_the_task(rlctl: Runner, sql, fitted: Path) -> None:
    """A 2-row `--sample --limit` pull in the store was scored as "gsm8k" without a word."""
    pull = rlctl("data", "pull", "gsm8k", "--sample", "--limit", str(N))
    assert pull.returncode == 0
    (sample_run,) = {x["run_id"] for x in jsonl(pull.stdout)}
    r = rlctl("eval", "gsm8k", "--model", str(fitted), "--shots", "0", *GEN, timeout=300)
    line = r.stderr.decode().strip().splitlines()[-1]
    assert r.returncode == 2, r.stderr.decode()
    assert f"(run {sample_run}) is rlctl's bundled sample (--sample), cut at --limit {N}" in line
    assert f"--data {sample_run} to score that sample on purpose" in line
    named = rlctl("eval", "gsm8k", "--model", str(fitted), "--shots", "0", *GEN,
                  "--data", sample_run, timeout=300)  # fmt: skip
    assert named.returncode == 0, named.stderr.decode()
    assert {x["value"] for x in sql("SELECT value FROM evals")} == {1.0}
    assert f"store:{sample_run} ({N} docs" in named.stderr.decode()  # the table's title

    full = rlctl(
        "data", "pull", "gsm8k", "--split", "test", "--from", str(SAMPLES / "gsm8k-test.jsonl")
    )
    assert full.returncode == 0
    (full_run,) = {x["run_id"] for x in jsonl(full.stdout)}
    r = rlctl("eval", "gsm8k", "--model", str(fitted), "--shots", "0", *GEN, "--limit", "2",
              timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    assert f"scoring the 'test' split of run {full_run}" in r.stderr.decode()
    rows = sql(f"SELECT DISTINCT \"limit\", data FROM evals WHERE data LIKE 'store:{full_run}%'")
    assert [x["limit"] for x in rows] == [2]


def test_few_shot_examples_come_from_the_tasks_own_split(
    rlctl: Runner, sql, tiny_model: Path, tmp_path: Path
) -> None:
    """lm-eval draws gsm8k's examples from train; they used to come from the test documents
    when only test data was given, so 8-shot numbers were not comparable to published ones.
    rlctl bundles GSM8K's whole train split, so that is the default pool; a stored pull of the
    split comes first, and a task without a pool stops (test_eval_suite's hendrycks_math)."""
    test = tmp_path / "test.jsonl"
    test.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in _docs()))
    args = ("eval", "gsm8k", "--model", str(tiny_model), *GEN, "--data", str(test))
    r = rlctl(*args, "--shots", "2", timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    train_rows = gzip.decompress((SAMPLES / "gsm8k-train.jsonl.gz").read_bytes()).splitlines()
    bundled = {orjson.loads(x)["question"] for x in train_rows}
    for s in jsonl(r.stdout):
        shots = s["prompt"].split("Question: ")[1:-1]
        assert len(shots) == 2 and all(q.split("\nAnswer:")[0] in bundled for q in shots)
    (data,) = {x["data"] for x in sql("SELECT DISTINCT data FROM evals")}
    assert "few-shot: file:" in data and data.endswith("gsm8k-train.jsonl.gz")
    train = tmp_path / "train.jsonl"
    train.write_bytes(
        b"".join(orjson.dumps({**d, "question": f"TRAIN {d['question']}"}) + b"\n" for d in _docs())
    )
    pulled = rlctl("data", "pull", "gsm8k", "--split", "train", "--from", str(train))
    (train_run,) = {x["run_id"] for x in jsonl(pulled.stdout)}
    r = rlctl(*args, "--shots", "2", timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    samples = jsonl(r.stdout)
    assert all(s["prompt"].count("Question: TRAIN ") == 2 for s in samples)
    (data,) = {
        x["data"]
        for x in sql(f"SELECT DISTINCT data FROM evals WHERE run_id = '{samples[0]['run_id']}'")
    }
    assert data.endswith(f"few-shot: store:{train_run}")  # the stored pull before the bundle
    r = rlctl(*args, "--shots", "2", "--fewshot-data", "test", timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    assert "few-shot: TEST documents" in r.stderr.decode()
    assert not any("TRAIN" in s["prompt"] for s in jsonl(r.stdout))


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (("gsm8kk", "--model", "{m}"), "lm-eval has no task 'gsm8kk'; did you mean gsm8k"),
        (("mbpp", "--model", "{m}"), "--allow-code-eval"),
        (("gsm8k", "--model", "{m}", "--gen-kwargs", "oops"), "--gen-kwargs 'oops'"),
        (("gsm8k", "--model", "{m}", "--shots", "-1"), "'--shots': -1 is not in the range x>=0"),
        (("gsm8k",), "--backend hf needs --model PATH"),
        (("gsm8k", "--backend", "openai"), "needs --base-url URL or --endpoint latest"),
        (("gsm8k", "--model", "./nope", "--data", "{data}"), "--model ./nope: no such directory"),
        (("gsm8k", "--model", "{m}", "--data", "missing.jsonl"), "missing.jsonl: no such file"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    rlctl: Runner, tmp_path: Path, args: tuple[str, ...], msg: str
) -> None:
    data = tmp_path / "d.jsonl"
    data.write_bytes(orjson.dumps(_docs(1)[0]) + b"\n")
    r = rlctl("eval", *(a.format(data=data, m=tmp_path) for a in args))
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert msg in err.strip().splitlines()[-1] and "Traceback" not in err


def test_compare_lines_runs_up_with_a_baseline(
    rlctl: Runner, tiny_model: Path, fitted: Path, tmp_path: Path
) -> None:
    data = tmp_path / "d.jsonl"
    data.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in _docs()))
    a, _ = _eval(rlctl, tiny_model, "--data", str(data))
    b, _ = _eval(rlctl, fitted, "--data", str(data))
    c, _ = _eval(rlctl, fitted, "--data", str(data), "--limit", "2")
    baseline = tmp_path / "base.yaml"
    baseline.write_text(
        "name: paper\nunit: percent\nscores:\n"
        "  - {task: gsm8k, shots: 0, filter: strict-match, metric: exact_match, value: 40}\n"
        "  - {task: gsm8k, shots: 8, filter: strict-match, metric: exact_match, value: 68.92}\n"
    )
    r = rlctl("eval", "compare", a, b, "--baseline", str(baseline), "--json")
    assert r.returncode == 0, r.stderr.decode()
    rows = {(x["shots"], x["filter"]): x for x in jsonl(r.stdout)}
    strict = rows[(0, "strict-match")]
    cols = list(strict)
    # one column per run, labelled by model and run suffix; a Δ for each against the baseline
    la, lb = f"model ({a[-6:]})", f"model ({b[-6:]})"
    assert cols[4:] == [la, lb, "differs", "paper", f"Δ {la}", f"Δ {lb}"]
    assert [strict[c] for c in cols[4:]] == ["0.00", "100.00", "", "40.00", "-40.00", "+60.00"]
    # An 8-shot baseline row never lines up with a 0-shot run.
    assert rows[(8, "strict-match")][lb] == "" and rows[(8, "strict-match")][f"Δ {lb}"] == ""
    # a run on 2 of the documents is marked, not silently lined up with the full ones
    r = rlctl("eval", "compare", b, c, "--json")
    strict = {(x["shots"], x["filter"]): x for x in jsonl(r.stdout)}[(0, "strict-match")]
    assert strict["differs"] == "limit"
    bad = rlctl("eval", "compare", "--baseline", str(ROOT / "pyproject.toml"))
    assert bad.returncode == 2


def test_any_task_on_the_same_data_runs_offline(rlctl: Runner, sql, tiny_model: Path) -> None:
    """gsm8k_cot shares gsm8k's dataset, so the same adapter feeds it; its own prompt and
    filters (\"The answer is N.\") are lm-eval's."""
    assert rlctl("data", "pull", "gsm8k", "--sample", "--limit", "2").returncode == 0
    _, samples = _eval(
        rlctl, tiny_model, "--data", "latest:data-pull", "--shots", "1", "--fewshot-data", "test"
    )
    for s in samples:  # the one example is the other document, never the document itself
        example, question = s["prompt"].split("Question: ")[1:]
        assert example.split("\nAnswer:")[0] != question.split("\nAnswer:")[0]
    r = rlctl(
        "eval", "gsm8k_cot", "--model", str(tiny_model), "--shots", "1", *GEN,
        "--data", "latest:data-pull", timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    (cot,) = {s["run_id"] for s in jsonl(r.stdout)}
    prompts = [s["prompt"] for s in jsonl(r.stdout)]
    assert all(p.startswith("Q: There are 15 trees") for p in prompts)  # lm-eval's CoT example
    rows = sql(f"SELECT task, filter, shots FROM evals WHERE run_id = '{cot}' ORDER BY filter")
    assert [(x["task"], x["filter"], x["shots"]) for x in rows] == [
        ("gsm8k_cot", "flexible-extract", 1),
        ("gsm8k_cot", "strict-match", 1),
    ]


def test_a_task_with_python_functions_reads_native_columns(
    rlctl: Runner, sql, tiny_model: Path, tmp_path: Path
) -> None:
    """hendrycks_math_algebra's `process_docs` and `process_results` are `!function`s of
    lm-eval's own utils.py: the generated YAML still resolves them next to the original."""
    data = tmp_path / "algebra.jsonl"
    rows = [
        {"problem": "Solve $x+1=3$.", "level": "Level 1", "type": "Algebra",
         "solution": "So $x=\\boxed{2}$."},
        {"problem": "What is $2\\cdot 3$?", "level": "Level 1", "type": "Algebra",
         "solution": "It is $\\boxed{6}$."},
    ]  # fmt: skip
    data.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    r = rlctl(
        "eval", "hendrycks_math_algebra", "--model", str(tiny_model), "--shots", "0",
        "--data", str(data), *GEN, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    samples = jsonl(r.stdout)
    # the target after lm-eval's own process_docs: the boxed answer, ready for `judge --judge math`
    assert [s["reference"] for s in samples] == ["2", "6"]
    (row,) = sql("SELECT task, metric, filter, value FROM evals")
    assert (row["task"], row["metric"], row["filter"], row["value"]) == (
        "hendrycks_math_algebra",
        "exact_match",
        "none",
        0.0,
    )


def test_chat_template_renders_the_prompt(rlctl: Runner, sql, tiny_model: Path) -> None:
    """--apply-chat-template: lm-eval renders through the model's template (Qwen2.5's ChatML
    here), and the score says it did."""
    assert rlctl("data", "pull", "gsm8k", "--sample", "--limit", "2").returncode == 0
    run, samples = _eval(rlctl, tiny_model, "--data", "latest:data-pull", "--apply-chat-template")
    assert all(s["prompt"].startswith("<|im_start|>") for s in samples)
    assert all(s["prompt"].endswith("<|im_start|>assistant\n") for s in samples)
    rows = sql(
        f"SELECT DISTINCT apply_chat_template, fewshot_as_multiturn FROM evals WHERE run_id = '{run}'"
    )
    assert rows == [{"apply_chat_template": True, "fewshot_as_multiturn": True}]


def test_the_cached_task_index_lists_what_lm_eval_parses(rlctl: Runner, tmp_path: Path) -> None:
    """The cached index of lm-eval's own task YAMLs (built on first use, read after) names the
    same tasks, kinds and offline marks as lm-eval parsing every file; a torn cache file is
    not trusted (read as no cache, so the index is parsed again). One full parse: the first
    use lists the index lm-eval itself just parsed (and writes it), so it is the reference the
    cached listing must equal; a torn file is checked where it is read."""
    from rlctl.stages.eval_index import _load

    cache = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    first = rlctl("eval", "tasks", extra_env=cache)
    (pickled,) = (tmp_path / "cache" / "rlctl").glob("lm-eval-task-index-*.pickle")
    cached = rlctl("eval", "tasks", extra_env=cache)
    assert first.returncode == cached.returncode == 0
    assert len(first.stdout.splitlines()) > 1000
    assert cached.stdout == first.stdout
    assert len(_load(pickled)) > 1000
    pickled.write_bytes(pickled.read_bytes()[:1000])  # a process killed while writing it
    assert _load(pickled) is None
