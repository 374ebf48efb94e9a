"""MaxEnt-GRPO (`train grpo --objective maxent-listwise`): the listwise targets against numbers
computed by hand and against the reference code (liv-daliberti/maxent-grpo) on the same inputs,
the limiting cases, the loss and its gradient on a tiny model, and a real run whose metrics
land in the store."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from rlctl.train.maxent import entropy, listwise_loss, listwise_q, target_weights
from tests.conftest import Runner, stages
from tests.fixtures.maxent_grpo import reference


def test_targets_by_hand() -> None:
    """rewards (2, 0, 1), T = 1: q = softmax; τ = β = 0.5 and reference log-probs (-1, -2, -3):
    w ∝ q^(1/(τ+β)) · π_ref^(β/(τ+β)) = q_i · e^(0.5·ref_i)."""
    rewards = [2.0, 0.0, 1.0]
    z = sum(math.exp(r) for r in rewards)
    q_hand = [math.exp(r) / z for r in rewards]
    q = listwise_q(torch.tensor([rewards], dtype=torch.float64), 1.0, 0.0)
    assert q[0].tolist() == pytest.approx(q_hand, rel=1e-12)
    ref = [-1.0, -2.0, -3.0]
    raw = [qi * math.exp(0.5 * r) for qi, r in zip(q_hand, ref, strict=True)]
    w_hand = [x / sum(raw) for x in raw]
    w = target_weights(q, torch.tensor([ref], dtype=torch.float64), tau=0.5, beta=0.5)
    assert w[0].tolist() == pytest.approx(w_hand, rel=1e-12)
    # the ε floor: q = (1, 0, 0) becomes (1 - 2ε, ε, ε) after the shift and renormalisation
    q = listwise_q(torch.tensor([[100.0, 0.0, 0.0]], dtype=torch.float64), 1.0, 0.01)
    assert q[0].tolist() == pytest.approx([0.98, 0.01, 0.01], abs=1e-12)


def test_the_limits() -> None:
    """τ → 0 with β = 0 puts all weight on the best completion; a large τ gives uniform
    weights; a large β (τ fixed) gives the reference's own distribution over the list."""
    q = listwise_q(torch.tensor([[0.3, 1.0, 0.1, 0.9]], dtype=torch.float64), 0.5, 1e-6)
    sharp = target_weights(q, None, tau=1e-4, beta=0.0)[0]
    assert sharp.tolist() == pytest.approx([0, 1, 0, 0], abs=1e-9)
    flat = target_weights(q, None, tau=1e6, beta=0.0)[0]
    assert flat.tolist() == pytest.approx([0.25] * 4, abs=1e-6)
    ref = torch.tensor([[-1.0, -3.0, -0.5, -2.0]], dtype=torch.float64)
    follows_ref = target_weights(q, ref, tau=1.0, beta=1e7)[0]
    assert follows_ref.tolist() == pytest.approx(torch.softmax(ref[0], 0).tolist(), abs=1e-5)
    assert entropy(flat[None]).item() == pytest.approx(math.log(4))


def test_the_same_as_the_reference_code_on_the_same_inputs() -> None:
    """q is theirs exactly. With β = 0 the weights are theirs exactly; with β > 0 they equal
    theirs with the denominator τ + β (the closed form), where theirs divides by τ alone."""
    gen = torch.Generator().manual_seed(0)
    rewards = torch.rand(6, 8, generator=gen, dtype=torch.float64) * 3
    ref = -torch.rand(6, 8, generator=gen, dtype=torch.float64) * 20
    for temperature, eps in [(1.0, 1e-6), (0.25, 0.02), (3.0, 0.2)]:
        q = listwise_q(rewards, temperature, eps)
        assert torch.allclose(q, reference.listwise_q(rewards, temperature, eps), atol=1e-15)
        for tau, beta in [(0.5, 0.0), (2.0, 0.0), (0.5, 0.04), (1.0, 0.3)]:
            ours = target_weights(q, ref, tau=tau, beta=beta)
            cfg = SimpleNamespace(tau=tau, beta=beta, denom=tau + beta)
            theirs = reference.weight_matrix_from_q(q, ref, None, cfg, normalize_by_tokens=False)
            assert torch.allclose(ours, theirs, atol=1e-12), (tau, beta)
            if beta > 0:
                as_coded = SimpleNamespace(tau=tau, beta=beta, denom=tau)
                differs = reference.weight_matrix_from_q(
                    q, ref, None, as_coded, normalize_by_tokens=False
                )
                assert not torch.allclose(ours, differs, atol=1e-6)


def test_the_loss_moves_a_tiny_model_to_the_targets(tiny_model: Path) -> None:
    """The gradient of the listwise loss in the sequence log-probs is softmax(s) − w, and a few
    optimizer steps on a real tiny model bring its distribution over four completions to the
    targets (the KL from the targets falls)."""
    s = torch.tensor([[0.1, -0.4, 0.3, 0.0]], requires_grad=True)
    w = torch.tensor([[0.7, 0.1, 0.1, 0.1]])
    listwise_loss(s, w).backward()
    assert s.grad is not None
    assert s.grad[0].tolist() == pytest.approx((torch.softmax(s, 1) - w)[0].tolist(), abs=1e-6)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    prompt = tok("2 + 3 =")["input_ids"]
    answers = [" 5", " 6", " four", " 55"]
    seqs = [prompt + tok(a)["input_ids"] for a in answers]
    width = max(map(len, seqs))
    ids = torch.tensor([x + [tok.pad_token_id] * (width - len(x)) for x in seqs])
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in seqs])
    completion = mask.clone()
    completion[:, : len(prompt)] = 0
    w = target_weights(listwise_q(torch.tensor([[1.0, 0.0, 0.0, 0.2]]), 0.2, 1e-6), None, 0.5, 0.0)

    def seq_logps() -> torch.Tensor:
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        logps = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0]
        return (logps * completion[:, 1:]).sum(1)[None]

    def kl() -> float:
        with torch.no_grad():
            p = torch.softmax(seq_logps(), 1)
        return float((w * (w / p).log()).sum())

    before = kl()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(10):
        opt.zero_grad()
        listwise_loss(seq_logps(), w).backward()
        opt.step()
    assert kl() < 0.5 * before, (before, kl())


def test_a_maxent_run_records_its_metrics(rlctl: Runner, sql, tiny_model: Path) -> None:
    """A real GRPO run with the listwise objective: τ, the target entropy (below log K when the
    rewards differ) and the weight entropy are in the store's metrics; a micro-batch that
    cannot hold whole prompt groups is one line, before training."""
    pull = "data pull gsm8k --sample --limit 12"
    args = (
        f"train grpo --model {tiny_model} "
        "--reward format --set judge.format.regex=\"'[0-9]'\" --set judge.format.search=true "
        "--objective maxent-listwise --maxent-tau 0.5 --maxent-q-temperature 0.5 "
        "--init-kl-coef 0.05 --max-steps 3 --set trainer.num_generations=4 "
        "--set trainer.max_completion_length=8 --set trainer.temperature=1.5"
    )
    r = stages(rlctl, pull, args + " --set trainer.per_device_train_batch_size=8")
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    rows = sql(
        "SELECT name, min(value) AS lo, max(value) AS hi, count(*) AS n FROM metrics "
        "WHERE name LIKE 'maxent/%' OR name = 'kl' GROUP BY 1 ORDER BY 1"
    )
    got = {x["name"]: x for x in rows}
    assert got["maxent/tau"]["lo"] == got["maxent/tau"]["hi"] == 0.5
    assert got["maxent/target_entropy"]["n"] == 3 and got["maxent/weight_entropy"]["n"] == 3
    assert got["maxent/target_entropy"]["lo"] < math.log(4) - 1e-3  # the rewards differed
    assert got["maxent/weight_entropy"]["hi"] <= math.log(4) + 1e-6
    assert "kl" in got
    bad = stages(
        rlctl,
        pull,
        args
        + " --set trainer.per_device_train_batch_size=2"
        + " --set trainer.gradient_accumulation_steps=2",
    )
    assert bad.returncode == 2, bad.stderr.decode()[-2000:]
    assert "multiple of trainer.num_generations (4)" in bad.stderr.decode()


def test_unscorable_completions_are_counted_each_step(
    rlctl: Runner, sql, tiny_model: Path, tmp_path: Path
) -> None:
    """A judge with no verdict (None) for a whole prompt's completions: the listwise targets
    cannot treat None as a free 0, so each step counts them in `maxent/unscorable` (here 2 of
    4 per step: the GARBLE prompt's group, which the test chat server never rates)."""
    from tests.chat_server import ChatServer

    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"id": "a", "prompt": "Say GARBLE"}\n{"id": "b", "prompt": "Say hi"}\n')
    with ChatServer() as server:
        r = rlctl(
            "train", "grpo", "--model", str(tiny_model), "-i", str(prompts), "--reward", "llm",
            "--objective", "maxent-listwise", "--max-steps", "2",
            "--set", "trainer.num_generations=2", "--set", "trainer.per_device_train_batch_size=4",
            "--set", "trainer.max_completion_length=4",
            "--set", "judge.llm.model=judge", "--set", f"judge.llm.base_url={server.url}",
            timeout=300,
        )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    rows = sql("SELECT step, value FROM metrics WHERE name = 'maxent/unscorable' ORDER BY step")
    assert [x["value"] for x in rows] == [2.0, 2.0], rows
