"""Tests of the Lagrangian sparsity constraint (Sheared-LLaMA eq. 2 / eq. 3)."""
import pytest
import torch

from composer_plugins.pruning.lagrangian import LagrangianMultipliers, target_at_step
from composer_plugins.pruning.masks import L0Masks
from composer_plugins.pruning.shapes import ModelShape


@pytest.mark.parametrize('step, warmup, expected', [
    (0, 100, 0.0), (25, 100, 0.125), (50, 100, 0.25), (100, 100, 0.5), (1000, 100, 0.5), (0, 0, 0.5),
    (-5, 100, 0.0)])
def test_target_ramp(step, warmup, expected):
    assert target_at_step(0.5, step, warmup) == pytest.approx(expected)


def test_target_ramp_rejects_negative_warmup():
    with pytest.raises(ValueError):
        target_at_step(0.5, 1, -1)


def test_multipliers_are_one_element_zero_params():
    lag = LagrangianMultipliers(['layer', 'hidden'])
    named = dict(lag.named_parameters())
    assert set(named) == {'lambda_1.layer', 'lambda_1.hidden', 'lambda_2.layer', 'lambda_2.hidden'}
    for p in named.values():
        assert p.shape == (1,) and p.item() == 0.0


def test_forward_value():
    lag = LagrangianMultipliers(['a', 'b'])
    with torch.no_grad():
        lag.lambda_1['a'].fill_(2.0)
        lag.lambda_2['a'].fill_(3.0)
        lag.lambda_1['b'].fill_(-1.0)
    total, terms = lag({'a': torch.tensor(0.4), 'b': torch.tensor([0.1])}, {'a': 0.2, 'b': 0.5})
    assert terms['a'].item() == pytest.approx(2 * 0.2 + 3 * 0.04)
    assert terms['b'].item() == pytest.approx(0.4)
    assert total.dim() == 0 and total.item() == pytest.approx(0.52 + 0.4)


def test_forward_rejects_mismatched_names():
    lag = LagrangianMultipliers(['a'])
    with pytest.raises(ValueError, match='expected'):
        lag({'b': torch.tensor(0.0)}, {'a': 0.0})
    with pytest.raises(ValueError, match='target'):
        lag({'a': torch.tensor(0.0)}, {})
    with pytest.raises(ValueError):
        LagrangianMultipliers(['a', 'a'])


def _toy_problem():
    source = ModelShape(num_layers=4, hidden_size=8, num_attention_heads=2, num_key_value_heads=2, head_dim=4,
                        intermediate_size=16, vocab_size=10)
    masks = L0Masks(source, source.replace(intermediate_size=8), ['intermediate'])
    lag = LagrangianMultipliers(masks.names)
    optimizer = torch.optim.AdamW([
        {'params': list(masks.parameters()), 'weight_decay': 0.0},
        {'params': list(lag.parameters()), 'weight_decay': 0.0, 'maximize': True},
    ], lr=0.1)
    return masks, lag, optimizer


def _step(masks, lag, optimizer, target):
    expected = masks.expected_sparsity()
    total, _ = lag(expected, target)
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    masks.clamp_()
    return expected['intermediate'].item()


def test_min_max_moves_multiplier_and_reaches_target():
    masks, lag, optimizer = _toy_problem()
    target = masks.target_sparsity()
    assert target == {'intermediate': 0.5}
    s0 = _step(masks, lag, optimizer, target)
    assert s0 < 0.5
    # Maximising: lambda_1 moves along sign(s - t) < 0, lambda_2 grows.
    assert lag.lambda_1['intermediate'].item() < 0 < lag.lambda_2['intermediate'].item()
    for _ in range(10):
        _step(masks, lag, optimizer, target)
    assert masks.expected_sparsity()['intermediate'].item() > s0
    for _ in range(189):
        s = _step(masks, lag, optimizer, target)
    assert abs(s - 0.5) < 0.05
    assert abs(masks.expected_sparsity()['intermediate'].item() - 0.5) < 0.05


def test_without_maximize_the_constraint_is_not_enforced():
    masks, lag, optimizer = _toy_problem()
    optimizer.param_groups[1]['maximize'] = False
    target = masks.target_sparsity()
    for _ in range(100):
        s = _step(masks, lag, optimizer, target)
    assert s < 0.1
