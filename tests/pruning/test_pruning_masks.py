"""Tests of the mask set: specs, expected sparsity and expected parameter counts."""
import pytest
import torch

from composer_plugins.pruning.hard_concrete import LOG_ALPHA_MAX
from composer_plugins.pruning.masks import (
    L0Masks,
    MaskSpec,
    build_mask_specs,
    default_mask_types,
    expected_params_from_probs,
    expected_sparsity_from_probs,
    target_sparsity_for,
)
from composer_plugins.pruning.shapes import ModelShape, count_params

MHA = ModelShape(num_layers=4, hidden_size=64, num_attention_heads=8, num_key_value_heads=8, head_dim=8,
                 intermediate_size=128, vocab_size=100)
MHA_TARGET = ModelShape(num_layers=3, hidden_size=32, num_attention_heads=4, num_key_value_heads=4, head_dim=8,
                        intermediate_size=64, vocab_size=100)
GQA = MHA.replace(num_key_value_heads=2)
GQA_TARGET = MHA_TARGET.replace(num_key_value_heads=1)
ALL_GQA = ['layer', 'kv_group', 'head', 'intermediate', 'hidden']


def test_specs_gqa():
    specs = build_mask_specs(GQA, GQA_TARGET.replace(num_attention_heads=2), ALL_GQA)
    assert specs == [
        MaskSpec('layer', (4,), 3),
        MaskSpec('kv_group', (4, 2), 1),
        MaskSpec('head', (4, 2, 4), 2),
        MaskSpec('intermediate', (4, 128), 64),
        MaskSpec('hidden', (64,), 32),
    ]


def test_head_mask_on_mha_is_an_error_and_not_a_default():
    with pytest.raises(ValueError, match="multi-head attention.*use 'kv_group'"):
        build_mask_specs(MHA, MHA_TARGET, ['head_layer', 'mlp', 'head', 'intermediate', 'hidden'])
    assert default_mask_types(MHA) == ['layer', 'kv_group', 'intermediate', 'hidden']
    assert default_mask_types(GQA) == ['layer', 'kv_group', 'head', 'intermediate', 'hidden']


@pytest.mark.parametrize('mask_types, target, match', [
    (['layer', 'bogus'], MHA, 'bogus'),
    (['layer', 'layer'], MHA, 'more than once'),
    (['layer', 'mlp', 'head_layer'], MHA, 'excludes'),
    (['head_layer', 'intermediate'], MHA, 'together'),
    (['kv_group', 'intermediate', 'hidden'], MHA_TARGET, 'num_layers'),
    (['layer', 'intermediate', 'hidden'], MHA_TARGET, 'num_key_value_heads'),
    (['layer', 'kv_group', 'hidden'], MHA_TARGET, 'intermediate_size'),
    (['layer', 'kv_group', 'head', 'intermediate', 'hidden'], MHA_TARGET, 'multi-head attention'),
    (['layer', 'kv_group', 'intermediate'], MHA_TARGET, 'hidden_size'),
])
def test_spec_errors(mask_types, target, match):
    source = MHA
    with pytest.raises(ValueError, match=match):
        build_mask_specs(source, target, mask_types)


def test_spec_error_missing_head_on_gqa():
    with pytest.raises(ValueError, match="q_per_kv.*'head'"):
        build_mask_specs(GQA, GQA_TARGET.replace(num_attention_heads=2),
                         ['layer', 'kv_group', 'intermediate', 'hidden'])


def test_spec_error_bad_target():
    with pytest.raises(ValueError, match='num_layers'):
        build_mask_specs(MHA_TARGET, MHA, ['layer'])


def _pattern(n_rows_shape, n_units, keep, gen):
    """0/1 probabilities with exactly `keep` ones in every row, at random positions."""
    scores = torch.rand(*n_rows_shape, n_units, generator=gen)
    idx = scores.argsort(dim=-1)[..., :keep]
    return torch.zeros_like(scores).scatter_(-1, idx, 1.0)


def _exact_probs(source, target, specs, seed=0):
    gen = torch.Generator().manual_seed(seed)
    probs = {}
    for spec in specs:
        probs[spec.name] = _pattern(spec.shape[:-1], spec.shape[-1], spec.keep_per_row, gen)
    return probs


CASES = [
    (MHA, MHA_TARGET, ['layer', 'kv_group', 'intermediate', 'hidden']),
    (MHA, MHA_TARGET, ['head_layer', 'mlp', 'kv_group', 'intermediate', 'hidden']),
    (GQA, GQA_TARGET, ALL_GQA),
    (GQA, GQA_TARGET.replace(num_attention_heads=2), ALL_GQA),
    (GQA, GQA_TARGET.replace(num_attention_heads=4, num_key_value_heads=2), ALL_GQA),
    (GQA.replace(attention_bias=True), GQA_TARGET.replace(attention_bias=True, num_attention_heads=2), ALL_GQA),
    (GQA.replace(tie_word_embeddings=True), GQA_TARGET.replace(tie_word_embeddings=True), ALL_GQA),
    (GQA.replace(attention_bias=True, tie_word_embeddings=True),
     GQA_TARGET.replace(attention_bias=True, tie_word_embeddings=True),
     ['head_layer', 'mlp', 'kv_group', 'head', 'intermediate', 'hidden']),
]


@pytest.mark.parametrize('source, target, mask_types', CASES)
def test_expected_params_exact_at_source_and_target(source, target, mask_types):
    specs = build_mask_specs(source, target, mask_types)
    ones = {s.name: torch.ones(s.shape) for s in specs}
    assert expected_params_from_probs(ones, source).item() == count_params(source)
    assert expected_params_from_probs({}, source).item() == count_params(source)
    for seed in range(3):
        probs = _exact_probs(source, target, specs, seed)
        assert expected_params_from_probs(probs, source).item() == count_params(target)


@pytest.mark.parametrize('source, target, mask_types', CASES)
def test_expected_sparsity_equals_target_at_exact_pattern(source, target, mask_types):
    specs = build_mask_specs(source, target, mask_types)
    probs = _exact_probs(source, target, specs)
    expected = expected_sparsity_from_probs(probs, source)
    targets = target_sparsity_for(source, target, [s.name for s in specs])
    assert set(expected) == set(targets) == {s.name for s in specs}
    for name, value in targets.items():
        assert expected[name].item() == pytest.approx(value, abs=1e-6), name
    ones = {s.name: torch.ones(s.shape) for s in specs}
    assert all(v.item() == 0 for v in expected_sparsity_from_probs(ones, source).values())


def test_expected_sparsity_is_per_mask_by_hand():
    # layer 0 kept with p=0.5, others 1; in every layer kv group 0 has p=0.5; head 0 of each group p=0.
    # Each constraint sees only its own gates (paper eq. 2), whatever the layer gates do.
    layer = torch.tensor([0.5, 1.0, 1.0, 1.0])
    kv = torch.ones(4, 2)
    kv[:, 0] = 0.5
    head = torch.ones(4, 2, 4)
    head[:, :, 0] = 0.0
    s = expected_sparsity_from_probs({'layer': layer, 'kv_group': kv, 'head': head}, GQA)
    assert s['layer'].item() == pytest.approx(1 - 3.5 / 4)
    assert s['kv_group'].item() == pytest.approx(1 - 4 * 1.5 / 8)
    assert s['head'].item() == pytest.approx(1 - 3 / 4)


def test_wrong_probability_shape_rejected():
    with pytest.raises(ValueError, match='intermediate'):
        expected_params_from_probs({'intermediate': torch.ones(3, 128)}, GQA)


def _set_pattern(masks: L0Masks, seed=0):
    probs = _exact_probs(masks.source, masks.target, masks.specs.values(), seed)
    with torch.no_grad():
        for name, gate in masks.gates.items():
            gate.log_alpha.copy_(torch.where(probs[name] > 0, 20.0, -20.0))  # beyond the clamp: p is 0 or 1 to 1e-8
    return probs


@pytest.mark.parametrize('source, target, mask_types', CASES[2:4] + CASES[1:2])
def test_l0masks_end_to_end(source, target, mask_types):
    masks = L0Masks(source, target, mask_types)
    assert masks.expected_params().item() == pytest.approx(count_params(source), rel=1e-2)
    assert masks.expected_params().item() < count_params(source)
    probs = _set_pattern(masks)
    assert masks.expected_params().item() == pytest.approx(count_params(target), rel=1e-2)
    expected = masks.expected_sparsity()
    for name, value in masks.target_sparsity().items():
        assert expected[name].item() == pytest.approx(value, abs=1e-2)
    det = masks.deterministic()
    for name, z in det.items():
        assert not z.requires_grad
        assert torch.equal(z > 0, probs[name] > 0), name
    assert det['hidden'][det['hidden'] > 0].eq(1).all()
    masks.eval()
    assert masks().keys() == det.keys()


def test_l0masks_deterministic_soft_values_and_sampling():
    masks = L0Masks(GQA, GQA_TARGET, ALL_GQA, init_noise_std=0.5, generator=torch.Generator().manual_seed(0))
    # At initialisation every kept unit has deterministic value 1: the masked model is the source.
    assert all(z[z > 0].eq(1).all() for z in masks.deterministic().values())
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for gate in masks.gates.values():
            gate.log_alpha.copy_(torch.randn(gate.log_alpha.shape, generator=gen) + 2)
    det = masks.deterministic()
    for name, spec in masks.specs.items():
        assert (det[name] > 0).sum(-1).eq(spec.keep_per_row).all(), name
    soft = det['intermediate'][det['intermediate'] > 0]
    assert bool((soft < 1).any()) and bool((soft > 0).all())
    assert det['hidden'][det['hidden'] > 0].eq(1).all()
    z = masks.train()()
    assert {n: tuple(t.shape) for n, t in z.items()} == {n: s.shape for n, s in masks.specs.items()}


def test_expected_sparsity_is_differentiable():
    masks = L0Masks(GQA, GQA_TARGET, ALL_GQA)
    total = sum(masks.expected_sparsity().values()) + masks.expected_params() * 1e-9
    total.backward()
    for name, gate in masks.gates.items():
        assert gate.log_alpha.grad is not None and gate.log_alpha.grad.abs().sum() > 0, name


def test_target_sparsity_values_and_ramp():
    target = GQA_TARGET.replace(num_attention_heads=2)
    masks = L0Masks(GQA, target, ALL_GQA)
    t = masks.target_sparsity()
    assert t == pytest.approx({'layer': 1 - 3 / 4, 'kv_group': 1 - 1 / 2, 'head': 1 - 2 / 4,
                               'intermediate': 1 - 64 / 128, 'hidden': 0.5})
    assert masks.target_sparsity(final=False) == {n: 0.0 for n in t}
    assert masks.target_sparsity_at(5, 10) == pytest.approx({n: v / 2 for n, v in t.items()})
    assert masks.target_sparsity_at(10, 10) == pytest.approx(t)


def test_clamp_all_gates():
    masks = L0Masks(GQA, GQA_TARGET, ALL_GQA)
    with torch.no_grad():
        for gate in masks.gates.values():
            gate.log_alpha.fill_(100.0)
    masks.clamp_()
    assert all(g.log_alpha.max().item() == LOG_ALPHA_MAX for g in masks.gates.values())
