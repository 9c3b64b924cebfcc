"""Tests of the hard concrete gate (Louizos et al. 2018)."""
import math

import pytest
import torch

from composer_plugins.pruning.hard_concrete import (
    BETA,
    KEPT_VALUE_FLOOR,
    LIMIT_L,
    LIMIT_R,
    LOG_ALPHA_MAX,
    LOG_ALPHA_MIN,
    HardConcreteGate,
    log_alpha_for_drop_prob,
)


def _gate_with(log_alpha: torch.Tensor) -> HardConcreteGate:
    gate = HardConcreteGate(tuple(log_alpha.shape))
    with torch.no_grad():
        gate.log_alpha.copy_(log_alpha)
    return gate


def test_init_keeps_everything():
    gate = HardConcreteGate((3, 7))
    assert gate.log_alpha.shape == (3, 7)
    assert torch.allclose(gate.log_alpha, torch.full((3, 7), math.log(99.0)))
    assert bool((gate.keep_prob() > 0.99).all())
    assert gate.deterministic(7, binary=True).eq(1).all()


def test_init_noise_is_reproducible_with_generator():
    a = HardConcreteGate(10, init_noise_std=0.01, generator=torch.Generator().manual_seed(3))
    b = HardConcreteGate(10, init_noise_std=0.01, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.log_alpha, b.log_alpha)
    assert a.log_alpha.std() > 0


@pytest.mark.parametrize('bad', [0, (), (3, 0), (2, -1)])
def test_bad_shape_rejected(bad):
    with pytest.raises(ValueError):
        HardConcreteGate(bad)


@pytest.mark.parametrize('bad', [0.0, 1.0, -0.5])
def test_bad_init_drop_prob_rejected(bad):
    with pytest.raises(ValueError):
        log_alpha_for_drop_prob(bad)


def test_clamp():
    gate = _gate_with(torch.tensor([-50.0, 0.5, 50.0]))
    gate.clamp_()
    assert gate.log_alpha.tolist() == [LOG_ALPHA_MIN, 0.5, LOG_ALPHA_MAX]


def test_sample_range_with_exact_zeros_and_ones():
    gate = _gate_with(torch.zeros(20_000))
    z = gate.sample(torch.Generator().manual_seed(0))
    assert z.shape == (20_000,)
    assert bool(((z >= 0) & (z <= 1)).all())
    assert bool((z == 0).any()) and bool((z == 1).any())
    assert bool(((z > 0) & (z < 1)).any())


def test_sample_extremes():
    """At the clamp's ends a gate is exactly 1 (top, log 1000) 99.5 % / exactly 0 (bottom, -log 100) 95.3 % of
    the time: strictly inside (0, 1) otherwise, so the loss still has a gradient on it and it can change sides."""
    gen = torch.Generator().manual_seed(0)
    top = _gate_with(torch.full((100_000,), LOG_ALPHA_MAX)).sample(gen)
    bottom = _gate_with(torch.full((100_000,), LOG_ALPHA_MIN)).sample(gen)
    assert float(top.eq(1).float().mean()) == pytest.approx(0.995, abs=0.002)
    assert float(bottom.eq(0).float().mean()) == pytest.approx(0.953, abs=0.005)


@pytest.mark.parametrize('log_alpha', [-3.0, -1.6, 0.0, 1.5])
def test_keep_prob_matches_monte_carlo(log_alpha):
    n = 200_000
    gate = _gate_with(torch.full((n,), log_alpha))
    p = float(gate.keep_prob()[0])
    assert p == pytest.approx(1 / (1 + math.exp(-(log_alpha - BETA * math.log(-LIMIT_L / LIMIT_R)))))
    freq = float((gate.sample(torch.Generator().manual_seed(1)) > 0).float().mean())
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(freq - p) < 3 * sigma


def test_sample_and_keep_prob_are_differentiable():
    gate = _gate_with(torch.zeros(64))
    gate.sample(torch.Generator().manual_seed(0)).sum().backward()
    assert gate.log_alpha.grad is not None and gate.log_alpha.grad.abs().sum() > 0
    gate.log_alpha.grad = None
    gate.keep_prob().sum().backward()
    assert bool((gate.log_alpha.grad > 0).all())


def test_deterministic_keeps_top_k_per_row():
    log_alpha = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0)) * 3
    gate = _gate_with(log_alpha)
    k = 2
    z = gate.deterministic(k)
    assert not z.requires_grad
    kept = z > 0
    assert kept.sum(-1).eq(k).all()
    top = log_alpha.topk(k, dim=-1).indices
    expected_kept = torch.zeros_like(kept).scatter_(-1, top, True)
    assert torch.equal(kept, expected_kept)
    soft = torch.clamp(torch.sigmoid(log_alpha) * (LIMIT_R - LIMIT_L) + LIMIT_L, 0, 1)
    assert torch.equal(z[kept], soft[kept].clamp(min=KEPT_VALUE_FLOOR))
    assert z[~kept].eq(0).all()


def test_kept_units_are_never_dead():
    """Even with every log_alpha at the clamp's low end, a kept unit is at least KEPT_VALUE_FLOOR."""
    gate = _gate_with(torch.full((4, 6), LOG_ALPHA_MIN))
    z = gate.deterministic(3)
    assert (z > 0).sum(-1).eq(3).all()
    assert z[z > 0].eq(KEPT_VALUE_FLOOR).all()


def test_deterministic_soft_value_below_one_and_binary_flag():
    gate = _gate_with(torch.tensor([[0.0, 1.0, -1.0, 3.0]]))
    soft = gate.deterministic(2)
    assert KEPT_VALUE_FLOOR < soft[0, 1] < 1 and soft[0, 3] == 1.0
    assert soft[0, 0] == 0 and soft[0, 2] == 0
    binary = gate.deterministic(2, binary=True)
    assert binary.tolist() == [[0.0, 1.0, 0.0, 1.0]]


def test_deterministic_ties_go_to_lowest_index():
    gate = _gate_with(torch.zeros(2, 6))
    assert gate.deterministic(3, binary=True).tolist() == [[1.0] * 3 + [0.0] * 3] * 2


def test_deterministic_bounds():
    gate = HardConcreteGate((2, 4))
    assert gate.deterministic(0).eq(0).all()
    assert gate.deterministic(4, binary=True).eq(1).all()
    with pytest.raises(ValueError):
        gate.deterministic(5)
    with pytest.raises(ValueError):
        gate.deterministic(-1)


def test_deterministic_ties_on_long_rows():
    log_alpha = torch.zeros(2, 5000)
    log_alpha[:, ::7] = 1.0
    z = _gate_with(log_alpha).deterministic(1000, binary=True)
    n_high = int((log_alpha[0] > 0).sum())
    expected = log_alpha > 0
    low_idx = (log_alpha[0] == 0).nonzero().squeeze(1)[:1000 - n_high]
    expected[:, low_idx] = True
    assert torch.equal(z > 0, expected)
