"""Tests of model shapes, parameter counts and target validation."""
from types import SimpleNamespace
from typing import get_args

import pytest

from composer_plugins.pruning.config import MaskType
from composer_plugins.pruning.shapes import (
    MASK_TYPES,
    ModelShape,
    count_non_embedding_params,
    count_params,
    mask_shapes,
    validate_target,
)

LLAMA2_7B = ModelShape(num_layers=32, hidden_size=4096, num_attention_heads=32, num_key_value_heads=32,
                       head_dim=128, intermediate_size=11008, vocab_size=32000)
SHEARED_1_3B = ModelShape(num_layers=24, hidden_size=2048, num_attention_heads=16, num_key_value_heads=16,
                          head_dim=128, intermediate_size=5504, vocab_size=32000)
SHEARED_2_7B = ModelShape(num_layers=32, hidden_size=2560, num_attention_heads=20, num_key_value_heads=20,
                          head_dim=128, intermediate_size=6912, vocab_size=32000)


@pytest.mark.parametrize('shape, millions', [(LLAMA2_7B, 6738.4), (SHEARED_1_3B, 1345.4), (SHEARED_2_7B, 2701.6)])
def test_paper_parameter_counts(shape, millions):
    assert round(count_params(shape) / 1e6, 1) == millions


def test_llama2_7b_exact_count():
    assert count_params(LLAMA2_7B) == 6_738_415_616
    assert count_non_embedding_params(LLAMA2_7B) == 6_738_415_616 - 2 * 32000 * 4096


def _tiny(**kw):
    base = dict(num_layers=2, hidden_size=6, num_attention_heads=4, num_key_value_heads=2, head_dim=3,
                intermediate_size=10, vocab_size=11)
    base.update(kw)
    return ModelShape(**base)


def test_tiny_count_by_hand():
    # per layer: q 6*12, k 6*6, v 6*6, o 12*6, mlp 3*6*10, norms 2*6
    layer = 72 + 36 + 36 + 72 + 180 + 12
    assert count_params(_tiny()) == 2 * 66 + 2 * layer + 6
    # tied: lm_head shares embed_tokens
    assert count_params(_tiny(tie_word_embeddings=True)) == 66 + 2 * layer + 6
    # q/k/v biases: 12 + 6 + 6 per layer
    assert count_params(_tiny(attention_bias=True)) == 2 * 66 + 2 * (layer + 24) + 6
    assert count_non_embedding_params(_tiny(tie_word_embeddings=True)) == 2 * layer + 6


def test_q_per_kv():
    assert _tiny().q_per_kv == 2
    assert LLAMA2_7B.q_per_kv == 1


def test_mask_shapes_of_every_mask_type():
    gqa = LLAMA2_7B.replace(num_key_value_heads=8)
    assert mask_shapes(gqa) == {
        'layer': (32,), 'head_layer': (32,), 'mlp': (32,), 'kv_group': (32, 8), 'head': (32, 8, 4),
        'intermediate': (32, 11008), 'hidden': (4096,),
    }
    assert tuple(mask_shapes(gqa)) == MASK_TYPES


def test_config_mask_type_names_every_mask_type():
    assert get_args(MaskType) == MASK_TYPES


@pytest.mark.parametrize('field, value', [
    ('num_layers', 0), ('hidden_size', -1), ('head_dim', 0), ('vocab_size', 2.5), ('intermediate_size', True)])
def test_validate_rejects_non_positive(field, value):
    with pytest.raises(ValueError, match=field):
        _tiny(**{field: value})


def test_validate_rejects_indivisible_heads():
    with pytest.raises(ValueError, match='num_key_value_heads'):
        _tiny(num_attention_heads=5, num_key_value_heads=2)


def test_shape_is_frozen():
    with pytest.raises(Exception):
        LLAMA2_7B.num_layers = 3


def test_from_hf_config():
    llama = SimpleNamespace(num_hidden_layers=32, hidden_size=4096, num_attention_heads=32, intermediate_size=11008,
                            vocab_size=32000, model_type='llama', num_key_value_heads=None, head_dim=None)
    assert ModelShape.from_hf_config(llama) == LLAMA2_7B
    qwen = SimpleNamespace(num_hidden_layers=2, hidden_size=6, num_attention_heads=4, num_key_value_heads=2,
                           intermediate_size=10, vocab_size=11, model_type='qwen2', tie_word_embeddings=True)
    shape = ModelShape.from_hf_config(qwen)
    assert shape.attention_bias and shape.tie_word_embeddings and shape.head_dim == 1
    with pytest.raises(ValueError, match='attention_bias'):
        ModelShape.from_hf_config(SimpleNamespace(**{**vars(llama), 'attention_bias': True}))


def test_validate_target_accepts_paper_targets():
    validate_target(LLAMA2_7B, SHEARED_1_3B)
    validate_target(LLAMA2_7B, SHEARED_2_7B)
    validate_target(LLAMA2_7B, LLAMA2_7B)


GQA = ModelShape(num_layers=4, hidden_size=64, num_attention_heads=8, num_key_value_heads=2, head_dim=8,
                 intermediate_size=128, vocab_size=100)


@pytest.mark.parametrize('changes, name', [
    (dict(num_layers=5), 'num_layers'),
    (dict(hidden_size=65), 'hidden_size'),
    (dict(intermediate_size=129), 'intermediate_size'),
    (dict(num_attention_heads=12, num_key_value_heads=4), 'num_key_value_heads'),
    (dict(num_attention_heads=16, num_key_value_heads=2), 'num_attention_heads'),
    (dict(num_attention_heads=6, num_key_value_heads=1), 'q_per_kv'),
    (dict(head_dim=4), 'head_dim'),
    (dict(vocab_size=99), 'vocab_size'),
    (dict(tie_word_embeddings=True), 'tie_word_embeddings'),
    (dict(attention_bias=True), 'attention_bias'),
])
def test_validate_target_errors_name_dimension(changes, name):
    with pytest.raises(ValueError, match=name):
        validate_target(GQA, GQA.replace(**changes))


def test_validate_target_rejects_indivisible_target_heads():
    # A ModelShape cannot even hold indivisible heads; validate_target also checks duck-typed targets.
    with pytest.raises(ValueError, match='divisible'):
        GQA.replace(num_attention_heads=3, num_key_value_heads=2)
    fake = SimpleNamespace(**{**vars(GQA), 'num_attention_heads': 3, 'num_key_value_heads': 2, 'q_per_kv': 1})
    with pytest.raises(ValueError, match='not divisible'):
        validate_target(GQA, fake)
