"""Named tiny configs of each supported family, randomly initialised, for tests and demos.

Vocabulary 320 covers the byte-level tokenizer (258 ids) with room to spare.
"""
from __future__ import annotations

from transformers import LlamaConfig, MistralConfig, PretrainedConfig, Qwen2Config

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


def tiny_config(name: str) -> PretrainedConfig:
    """Return a fresh tiny config: ``tiny-llama`` (MHA), ``tiny-llama-gqa``, ``tiny-mistral``, ``tiny-qwen2``."""
    builders = {
        'tiny-llama': lambda: LlamaConfig(**_COMMON, num_attention_heads=4, num_key_value_heads=4),
        'tiny-llama-gqa': lambda: LlamaConfig(
            **_COMMON, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
        ),
        'tiny-mistral': lambda: MistralConfig(
            **_COMMON, num_attention_heads=4, num_key_value_heads=2, sliding_window=None,
        ),
        'tiny-qwen2': lambda: Qwen2Config(
            **_COMMON, num_attention_heads=4, num_key_value_heads=2, use_sliding_window=False,
        ),
    }
    if name not in builders:
        raise KeyError(f'unknown tiny model {name!r}; expected one of {sorted(builders)}')
    return builders[name]()


TINY_MODEL_NAMES = ('tiny-llama', 'tiny-llama-gqa', 'tiny-mistral', 'tiny-qwen2')
