"""The projection onto a target sparsity and the importance initialisation of the log-alphas."""
import pytest
import torch

from composer_plugins.pruning.hard_concrete import LOG_ALPHA_MAX, LOG_ALPHA_MIN, HardConcreteGate
from composer_plugins.pruning.mask_init import expected_gate_sparsity, log_alpha_from_keep, shift_to_sparsity


@pytest.mark.parametrize('target', [0.0625, 0.25, 0.5, 0.65])
def test_shift_reaches_the_target_and_keeps_the_order(target):
    # no unit reaches the clamp
    log_alpha = torch.randn(6, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.5
    shifted = shift_to_sparsity(log_alpha, target)
    assert shifted.abs().max() < LOG_ALPHA_MAX
    for row in shifted:  # every row (what the deterministic mask keeps a count of) is on the target
        assert float(expected_gate_sparsity(row)) == pytest.approx(target, abs=1e-9)
    assert torch.equal(torch.argsort(shifted, dim=-1, stable=True), torch.argsort(log_alpha, dim=-1, stable=True))
    assert float((shifted - log_alpha).std(-1).max()) < 1e-12  # one shift common to each row


def test_unreachable_target_ends_at_the_clamp():
    shifted = shift_to_sparsity(torch.zeros(8), 0.0)  # keep_prob < 1 for any finite log_alpha
    assert shifted.eq(LOG_ALPHA_MAX).all()
    assert shift_to_sparsity(torch.zeros(8), 1.0).eq(LOG_ALPHA_MIN).all()


def test_bad_target_is_named():
    with pytest.raises(ValueError, match='target sparsity must be in'):
        shift_to_sparsity(torch.zeros(3), float('nan'))


def test_importance_init_keeps_exactly_the_mask_at_the_target_sparsity():
    generator = torch.Generator().manual_seed(0)
    keep = torch.zeros(5, 12)
    keep.scatter_(-1, torch.stack([torch.randperm(12, generator=generator)[:9] for _ in range(5)]), 1.0)
    log_alpha = log_alpha_from_keep(keep, target_sparsity=0.25)
    assert log_alpha.dtype == torch.float32
    gate = HardConcreteGate((5, 12))
    with torch.no_grad():
        gate.log_alpha.copy_(log_alpha)
    assert torch.equal(gate.deterministic(9) > 0, keep.bool())
    kept = gate.deterministic(9)[keep.bool()]  # kept units start alike, at their soft value
    assert bool((kept > 0.9).all()) and float(kept.max() - kept.min()) == 0.0
    assert float(expected_gate_sparsity(gate.log_alpha)) == pytest.approx(0.25, abs=1e-6)
