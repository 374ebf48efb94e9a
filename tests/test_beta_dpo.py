"""β-DPO: the update rules against numbers worked out by hand, and equality with TRL's
sigmoid DPO loss (alone or with its SFT term) when α = 0 and ρ = 0."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")

from rlctl.train.beta_dpo import BetaDPOLoss, MarginStats  # noqa: E402


def test_running_stats_by_hand() -> None:
    """The official rule: M0 and σ start at 0, σ is the unbiased std."""
    s = MarginStats(momentum=0.9)
    m0, sigma = s.update(torch.tensor([1.0, 3.0]))  # mean 2, unbiased std √2
    assert m0 == pytest.approx(0.1 * 2) and sigma == pytest.approx(0.1 * math.sqrt(2))
    m0, sigma = s.update(torch.tensor([4.0, 8.0]))  # mean 6, unbiased std 2√2
    assert m0 == pytest.approx(0.9 * 0.2 + 0.1 * 6)
    assert sigma == pytest.approx(0.9 * 0.1 * math.sqrt(2) + 0.1 * 2 * math.sqrt(2))
    warm = MarginStats(momentum=0.9, init="first-batch")  # the named alternative
    assert warm.update(torch.tensor([1.0, 3.0])) == pytest.approx((2.0, math.sqrt(2)))


def test_weights_by_hand() -> None:
    margins = [-10.0, 0.9, 1.1, 12.0]
    _, info = BetaDPOLoss(rho=0.5)(torch.tensor(margins))
    m0 = 0.1 * 1.0  # 0.9 · 0 + 0.1 · the batch mean (1.0)
    sigma = 0.1 * math.sqrt(sum((m - 1.0) ** 2 for m in margins) / 3)  # unbiased
    assert info["m0"] == pytest.approx(m0) and info["sigma"] == pytest.approx(sigma)
    expected = [math.exp(-0.5 * ((m - m0) / sigma) ** 2) for m in margins]
    assert info["weights"].tolist() == pytest.approx(expected)


def _official_betas(batches: list[list[float]], beta0: float, a: float) -> list[float]:
    """β of the authors' code (junkangwu/beta-DPO `trainers.py`: `update_and_sync_tensor_mean`
    then `preference_loss`), transcribed for ρ = 0, where its multinomial keeps every pair:
    gap_mean and gap_std start as zeros, move with γ = 0.9 before the loss, use torch.std."""
    gap_mean, gap_std, out = torch.zeros(1), torch.zeros(1), []
    for batch in batches:
        a_gap = torch.tensor(batch)
        gap_mean.mul_(0.9).add_(a_gap.mean(), alpha=0.1)
        gap_std.mul_(0.9).add_(a_gap.std(), alpha=0.1)
        beta_used = (beta0 * (1 + a * (a_gap.mean() - gap_mean))).clamp(min=1e-3)
        out.append(float(beta_used))
    return out


def test_beta_follows_the_official_code() -> None:
    """Three batches against the transcription: the first-batch start that rlctl used before
    gives β = β0 at step 0 whatever the margins, the official rule does not."""
    batches = [[1.2, 0.4, 2.9, 1.5], [-0.8, -1.9, 0.3, -0.2], [0.5, 0.7, 3.1, -2.2]]
    ours = BetaDPOLoss(beta0=0.1, rho=0.0, alpha=0.6)
    got = [ours(torch.tensor(b))[1]["beta"] for b in batches]
    assert got == pytest.approx(_official_betas(batches, 0.1, 0.6), rel=1e-6)
    assert got[0] == pytest.approx(0.1 * (1 + 0.6 * 0.9 * 1.5), rel=1e-6)  # = 0.181
    warm = BetaDPOLoss(beta0=0.1, rho=0.0, alpha=0.6, stats_init="first-batch")
    assert warm(torch.tensor(batches[0]))[1]["beta"] == pytest.approx(0.1)


def test_state_round_trips() -> None:
    """What a checkpoint carries: the running stats and the sampler's RNG."""
    a = BetaDPOLoss(rho=0.5, seed=3)
    a(torch.tensor([0.1, 0.5, 0.9, 1.3]))
    b = BetaDPOLoss(rho=0.5, seed=99)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    batch = torch.tensor([0.2, 0.4, 1.0, 1.4])
    ia, ib = a(batch)[1], b(batch)[1]
    assert ia["beta"] == ib["beta"] and ia["mask"].tolist() == ib["mask"].tolist()


def test_mask_beta_and_loss_by_hand() -> None:
    """Running stats M0 = 1, σ = 0.1 (momentum 1 keeps them): the tails' weights are
    exp(-0.5 * 110²) = 0, so keeping ⌊4 · 0.5⌋ = 2 pairs keeps the central two."""
    loss_fn = BetaDPOLoss(beta0=0.1, rho=0.5, alpha=0.6)
    loss_fn.stats = MarginStats(momentum=1.0, mean=1.0, std=0.1)
    margins = torch.tensor([-10.0, 0.9, 1.1, 12.0], requires_grad=True)
    loss, info = loss_fn(margins)
    assert info["mask"].tolist() == [False, True, True, False]
    beta = 0.1 * (1 + 0.6 * ((0.9 + 1.1) / 2 - 1.0))  # = 0.1
    assert info["beta"] == pytest.approx(beta)
    expected = (math.log1p(math.exp(-beta * 0.9)) + math.log1p(math.exp(-beta * 1.1))) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert margins.grad.tolist()[0] == 0 and margins.grad.tolist()[3] == 0  # dropped: no gradient


def test_two_processes_choose_and_weigh_as_one_on_the_joint_batch() -> None:
    """Each process sees every margin (gathered) and its own at an offset: the same seeded
    draw keeps the same pairs everywhere, β is the same, and the average of the two local
    losses (what DDP's gradient average optimises) is the one-process loss, gradients too."""
    joint = torch.randn(8, generator=torch.Generator().manual_seed(5)) * 3
    one = joint.clone().requires_grad_(True)
    loss, info = BetaDPOLoss(rho=0.5, seed=2)(one)
    loss.backward()
    halves = [joint[:4].clone().requires_grad_(True), joint[4:].clone().requires_grad_(True)]
    parts = [BetaDPOLoss(rho=0.5, seed=2)(h, joint, offset=4 * i) for i, h in enumerate(halves)]
    assert [p[1]["beta"] for p in parts] == [info["beta"]] * 2
    assert torch.equal(torch.cat([p[1]["mask"] for p in parts]), info["mask"])
    assert sum(int(p[1]["mask"].sum()) for p in parts) == info["kept"] == 4
    ddp = (parts[0][0] + parts[1][0]) / 2
    assert float(ddp) == pytest.approx(float(loss), rel=1e-6)
    ddp.backward()
    assert torch.cat([h.grad for h in halves]).tolist() == pytest.approx(one.grad.tolist())


def test_beta_is_clamped_and_not_differentiated() -> None:
    loss_fn = BetaDPOLoss(beta0=0.1, rho=0.0, alpha=100.0)
    margins = torch.tensor([-5.0, -5.0], requires_grad=True)
    loss_fn.stats.update(torch.tensor([5.0, 5.0]))  # M0 = 5 makes 1 + α(mean − M0) negative
    _, info = loss_fn(margins)
    assert info["beta"] == 1e-3


def test_sampling_is_seeded() -> None:
    m = torch.randn(32, generator=torch.Generator().manual_seed(1))
    a = BetaDPOLoss(rho=0.5, seed=3)(m)[1]["mask"]
    b = BetaDPOLoss(rho=0.5, seed=3)(m)[1]["mask"]
    c = BetaDPOLoss(rho=0.5, seed=4)(m)[1]["mask"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_alpha_0_rho_0_is_sigmoid_dpo() -> None:
    import torch.nn.functional as F

    m = torch.randn(16, generator=torch.Generator().manual_seed(0))
    loss, info = BetaDPOLoss(beta0=0.1, rho=0.0, alpha=0.0)(m)
    assert info["kept"] == 16 and info["beta"] == 0.1
    assert torch.equal(loss, (-F.logsigmoid(0.1 * m)).mean())


@pytest.mark.parametrize(
    "losses",
    [{"loss_type": ["sigmoid"]}, {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]}],
)
def test_trainer_with_alpha_0_rho_0_equals_trl_on_the_same_batch(
    tiny_model, tmp_path, losses
) -> None:
    """The same batch through TRL's own DPOTrainer and through BetaDPOTrainer: sigmoid alone,
    and with TRL's SFT term (the negative log-likelihood of the chosen completions, token mean)
    added with its weight."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from rlctl.train.beta_dpo import make_trainer_class

    pairs = Dataset.from_list(
        [
            {
                "prompt": f"Question {i}: how many eggs?",
                "chosen": f" {i} eggs.",
                "rejected": " I do not know, sorry.",
            }
            for i in range(8)
        ]
    )
    tok = AutoTokenizer.from_pretrained(tiny_model)
    args = DPOConfig(
        output_dir=str(tmp_path / "o"),
        per_device_train_batch_size=8,
        max_length=64,
        use_cpu=True,
        bf16=False,
        report_to=[],
        beta=0.1,
        **losses,
    )
    trl_trainer = DPOTrainer(
        model=str(tiny_model), args=args, train_dataset=pairs, processing_class=tok
    )
    from rlctl.records import RecordWriter

    margins = RecordWriter(tmp_path / "margins.jsonl")
    ours = make_trainer_class()(
        margin_log=margins,
        model=str(tiny_model),
        args=args,
        train_dataset=pairs,
        processing_class=tok,
        beta_dpo=BetaDPOLoss(beta0=0.1, rho=0.0, alpha=0.0),
    )
    batch = next(iter(trl_trainer.get_train_dataloader()))
    trl_trainer.model.train()  # as inside trainer.train(): metrics go under "train"
    ours.model.train()
    expected = trl_trainer._compute_loss(trl_trainer.model, batch, False)
    got = ours._compute_loss(ours.model, batch, False)
    assert torch.allclose(got, expected, atol=1e-6), (got, expected)
    assert ours._metrics["train"]["beta_dpo/kept"] == [8.0]
    margins.close()
    rows = [json.loads(x) for x in (tmp_path / "margins.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(m["kept"] for m in rows) and {m["step"] for m in rows} == {1}
