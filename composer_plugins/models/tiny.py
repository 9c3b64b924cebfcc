"""Named tiny configs of each supported family, randomly initialised, for tests and demos.

Vocabulary 320 covers the byte-level tokenizer (258 ids) with room to spare. The fields are
plain data (:func:`tiny_config_fields`, no transformers or torch import), so a run's config
can be checked against them in seconds; :func:`tiny_config` builds the HF config.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PretrainedConfig

TINY_VOCAB_SIZE = 320

_COMMON = dict(
    vocab_size=TINY_VOCAB_SIZE,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    max_position_embeddings=1024,
    rms_norm_eps=1e-5,
    initializer_range=0.02,
    bos_token_id=None,
    eos_token_id=256,
    pad_token_id=257,
)

_TINY: dict[str, tuple[str, dict[str, Any]]] = {
    'tiny-llama': ('llama', dict(num_attention_heads=4, num_key_value_heads=4)),
    'tiny-llama-gqa': ('llama', dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)),
    'tiny-mistral': ('mistral', dict(num_attention_heads=4, num_key_value_heads=2, sliding_window=None)),
    'tiny-qwen2': ('qwen2', dict(num_attention_heads=4, num_key_value_heads=2, use_sliding_window=False)),
}

TINY_MODEL_NAMES = tuple(_TINY)


def tiny_config_fields(name: str) -> dict[str, Any]:
    """The config fields of tiny model ``name``, ``model_type`` included (plain data).

    Raises:
        KeyError: an unknown name.
    """
    if name not in _TINY:
        raise KeyError(f'unknown tiny model {name!r}; expected one of {sorted(_TINY)}')
    model_type, fields = _TINY[name]
    return {'model_type': model_type, **_COMMON, **fields}


def tiny_config(name: str) -> 'PretrainedConfig':
    """Return a fresh tiny config: ``tiny-llama`` (MHA), ``tiny-llama-gqa``, ``tiny-mistral``, ``tiny-qwen2``."""
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    fields = tiny_config_fields(name)
    config_class = {'llama': LlamaConfig, 'mistral': MistralConfig, 'qwen2': Qwen2Config}[fields.pop('model_type')]
    return config_class(**fields)
