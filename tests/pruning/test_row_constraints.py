"""The Lagrangian acts on every row's expected sparsity, as the export keeps a count per row.

The issue's example: an ``intermediate`` mask of 2 layers x 8 channels with a target of 4 per
layer, row 0 all at the top of the clamp and row 1 all at the bottom. The global expected
sparsity is then 0.5 -- exactly the target -- so a constraint on the global mean is met, yet
the export would keep 4 channels of row 1 that training almost never sampled and drop 4 of
row 0's always-on channels.
"""
from __future__ import annotations

import torch

from composer_plugins.models.causal_lm import ShearCausalLM
from composer_plugins.models.export import export_pruned_model
from composer_plugins.pruning.hard_concrete import LOG_ALPHA_MAX, LOG_ALPHA_MIN
from composer_plugins.pruning.lagrangian import LagrangianMultipliers
from composer_plugins.pruning.mask_init import expected_gate_sparsity, shift_to_sparsity
from composer_plugins.pruning.masks import (
    L0Masks,
    expected_row_sparsity_from_probs,
    expected_sparsity_from_probs,
)
from composer_plugins.pruning.shapes import ModelShape

SOURCE = ModelShape(num_layers=2, hidden_size=16, num_attention_heads=2, num_key_value_heads=2, head_dim=8,
                    intermediate_size=8, vocab_size=32)
TARGET = ModelShape(num_layers=2, hidden_size=16, num_attention_heads=2, num_key_value_heads=2, head_dim=8,
                    intermediate_size=4, vocab_size=32)


def _lopsided(masks: L0Masks) -> None:
    with torch.no_grad():
        masks.gates['intermediate'].log_alpha.copy_(torch.stack([torch.full((8,), LOG_ALPHA_MAX),
                                                                 torch.full((8,), LOG_ALPHA_MIN)]))


def _train_constraint(per_row: bool, steps: int = 600) -> torch.Tensor:
    """Min over log-alphas, max over the multipliers, of the Lagrangian alone; returns kept counts per row."""
    masks = L0Masks(SOURCE, TARGET, ['intermediate'])
    _lopsided(masks)
    multipliers = LagrangianMultipliers(masks.names)
    gates = torch.optim.Adam(masks.parameters(), lr=0.05)
    duals = torch.optim.Adam(multipliers.parameters(), lr=0.05, maximize=True)
    target = masks.target_sparsity()
    for _ in range(steps):
        probs = masks.kept_fractions()  # as the pruner counts sparsity
        expected = expected_row_sparsity_from_probs(probs) if per_row else expected_sparsity_from_probs(probs, SOURCE)
        loss, _ = multipliers(expected, target)
        gates.zero_grad()
        duals.zero_grad()
        loss.backward()
        gates.step()
        duals.step()
        masks.clamp_()
    return masks.kept_fractions()['intermediate'].detach().sum(-1)


def test_global_constraint_is_met_by_the_lopsided_mask():
    masks = L0Masks(SOURCE, TARGET, ['intermediate'])
    _lopsided(masks)
    probs = masks.kept_fractions()
    assert abs(float(expected_sparsity_from_probs(probs, SOURCE)['intermediate']) - 0.5) < 0.03
    rows = expected_row_sparsity_from_probs(probs)['intermediate']
    assert rows.shape == (2,) and float(rows[0]) < 0.01 and float(rows[1]) > 0.95


def test_per_row_constraint_brings_every_row_to_its_count():
    kept = _train_constraint(per_row=True)
    # 3.974 / 3.979 at 300 steps, 4.000 / 4.000 at 600: every row keeps the 4 units that the export keeps
    assert torch.allclose(kept, torch.tensor([4.0, 4.0]), atol=0.05), kept
    # the control: a constraint on the global mean leaves the rows where they were
    kept_global = _train_constraint(per_row=False)
    assert float(kept_global[0]) > 7.9 and float(kept_global[1]) < 0.1, kept_global


def test_lagrangian_term_is_the_mean_over_rows():
    multipliers = LagrangianMultipliers(['intermediate'])
    with torch.no_grad():
        multipliers.lambda_1['intermediate'].fill_(2.0)
        multipliers.lambda_2['intermediate'].fill_(3.0)
    rows = torch.tensor([0.0, 1.0], dtype=torch.float64)
    total, _ = multipliers({'intermediate': rows}, {'intermediate': 0.5})
    # mean of 2 (s - t) + 3 (s - t)^2 over the rows: (-1 + 0.75 + 1 + 0.75) / 2
    assert float(total) == 0.75


def test_settle_shift_puts_every_row_on_the_target():
    log_alpha = torch.stack([torch.linspace(0, 4, 8), torch.linspace(-4, 0, 8)]).double()
    shifted = shift_to_sparsity(log_alpha, 0.5)
    for row in shifted:
        assert abs(float(expected_gate_sparsity(row)) - 0.5) < 1e-9
    assert torch.equal(shifted.argsort(-1), log_alpha.argsort(-1))  # the order within each row is kept


def test_export_after_row_training_equals_the_masked_model():
    """The trained lopsided mask exports 4 channels per layer, and the export equals the masked model."""
    torch.manual_seed(0)
    model = ShearCausalLM('tiny-llama', config_overrides={'intermediate_size': 8}, pruning={
        'target': {'num_layers': 2, 'num_attention_heads': 4, 'num_key_value_heads': 4, 'hidden_size': 64,
                   'intermediate_size': 4},
        'mask_types': ['intermediate']})
    masks = model.pruner.l0_masks
    _lopsided(masks)
    with torch.no_grad():  # what per-row training ends with: every row near 4 expected kept units
        la = masks.gates['intermediate'].log_alpha
        la.copy_(la + torch.linspace(-0.5, 0.5, 8))
        la.copy_(shift_to_sparsity(la, 0.5))
    model = model.double().eval()
    deterministic = masks.deterministic()
    assert (deterministic['intermediate'] > 0).sum(-1).tolist() == [4, 4]
    ids = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(3))
    batch = {'input_ids': ids, 'attention_mask': torch.ones_like(ids), 'labels': ids}
    with torch.no_grad():
        expected = model(batch).logits
        exported = export_pruned_model(model.model, deterministic, model.pruner.source, model.pruner.target)
        got = exported(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert exported.config.intermediate_size == 4
    assert (got - expected).abs().max().item() < 1e-9


def test_eval_at_expected_keeps_each_rows_rounded_expected_count():
    """``eval_target_masks: false``: each row keeps round(sum of its kept fractions) units, not the target's count."""
    masks = L0Masks(SOURCE, TARGET, ['intermediate'])
    with torch.no_grad():  # row 0: 6 units at the top of the clamp; row 1: 2 (the rest at the bottom)
        masks.gates['intermediate'].log_alpha.copy_(torch.tensor([
            [LOG_ALPHA_MAX] * 6 + [LOG_ALPHA_MIN] * 2, [LOG_ALPHA_MIN] * 6 + [LOG_ALPHA_MAX] * 2]))
    current = masks.deterministic('expected')['intermediate']
    assert (current > 0).sum(-1).tolist() == [6, 2]
    assert (masks.deterministic()['intermediate'] > 0).sum(-1).tolist() == [4, 4]  # the target, as exported
    masks.eval()
    pruner_masks = masks()['intermediate']  # a plain eval forward is the target's
    assert (pruner_masks > 0).sum(-1).tolist() == [4, 4]
