"""Shapes of LLaMA-family decoder models and of their masks, exact parameter counts, and target checks.

Sheared-LLaMA (Xia et al. 2023, arXiv 2310.06694, Sec. 2.1) prunes a source model to a
*pre-specified target shape*; :func:`validate_target` says whether a target can be reached
from a source by structured pruning alone, and :func:`mask_shapes` gives the shape of every
mask type.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from composer_plugins.errors import ConfigError

log = logging.getLogger(__name__)

LAYER = 'layer'
HEAD_LAYER = 'head_layer'
MLP = 'mlp'
KV_GROUP = 'kv_group'
HEAD = 'head'
INTERMEDIATE = 'intermediate'
HIDDEN = 'hidden'

MASK_TYPES: tuple[str, ...] = (LAYER, HEAD_LAYER, MLP, KV_GROUP, HEAD, INTERMEDIATE, HIDDEN)
"""Every mask name, in the canonical order that specs and dicts use."""

_SIZE_FIELDS = (
    'num_layers',
    'hidden_size',
    'num_attention_heads',
    'num_key_value_heads',
    'head_dim',
    'intermediate_size',
    'vocab_size',
)


@dataclass(frozen=True)
class ModelShape:
    """Shape of a LLaMA-family (LLaMA, Mistral, Qwen2, SmolLM) decoder-only model.

    Attributes:
        num_layers: number of decoder layers ``L``.
        hidden_size: residual width ``H``.
        num_attention_heads: query heads per layer.
        num_key_value_heads: key/value heads per layer (``G``; equal to the query heads for MHA).
        head_dim: width of one head (need not equal ``H / heads``).
        intermediate_size: SwiGLU FFN width ``F``.
        vocab_size: rows of the embedding / LM head ``V``.
        tie_word_embeddings: the LM head shares the embedding matrix.
        attention_bias: q/k/v projections have biases, as in Qwen2 (o_proj never has one).

    Construction validates the shape (see :meth:`validate`).
    """

    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool = False
    attention_bias: bool = False

    def __post_init__(self) -> None:
        self.validate()

    @property
    def q_per_kv(self) -> int:
        """Query heads per key/value head (``Q``; 1 for multi-head attention)."""
        return self.num_attention_heads // self.num_key_value_heads

    def validate(self) -> None:
        """Checks that every size is a positive int and that heads divide into KV groups.

        Raises:
            ValueError: naming the offending field.
        """
        for name in _SIZE_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f'model shape: {name} must be a positive int, got {value!r}')
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f'model shape: num_attention_heads ({self.num_attention_heads}) must be divisible by '
                f'num_key_value_heads ({self.num_key_value_heads})')

    def replace(self, **changes: Any) -> ModelShape:
        """Returns a copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_hf_config(cls, config: Any) -> ModelShape:
        """Reads a shape from a Hugging Face ``LlamaConfig`` / ``Qwen2Config``-like object (duck-typed).

        ``head_dim`` defaults to ``hidden_size // num_attention_heads`` and
        ``num_key_value_heads`` to ``num_attention_heads``. Qwen2 (``model_type == 'qwen2'``)
        always has q/k/v biases; for LLaMA, ``attention_bias=True`` also puts a bias on
        o_proj, and ``mlp_bias=True`` on the MLP, neither of which is modelled here.

        Raises:
            ValueError: for LLaMA-style ``attention_bias`` or ``mlp_bias``.
        """
        heads = config.num_attention_heads
        head_dim = getattr(config, 'head_dim', None) or config.hidden_size // heads
        kv_heads = getattr(config, 'num_key_value_heads', None) or heads
        if getattr(config, 'mlp_bias', False):
            raise ConfigError('model config: mlp_bias=True is not supported by structured pruning')
        is_qwen2 = getattr(config, 'model_type', None) == 'qwen2'
        if not is_qwen2 and getattr(config, 'attention_bias', False):
            raise ConfigError('model config: LLaMA-style attention_bias=True (bias on o_proj too) is not supported')
        return cls(
            num_layers=config.num_hidden_layers,
            hidden_size=config.hidden_size,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            head_dim=head_dim,
            intermediate_size=config.intermediate_size,
            vocab_size=config.vocab_size,
            tie_word_embeddings=bool(getattr(config, 'tie_word_embeddings', False)),
            attention_bias=is_qwen2,
        )


def mask_shapes(shape: ModelShape) -> dict[str, tuple[int, ...]]:
    """The shape of every mask type (:data:`MASK_TYPES` order) for a model of ``shape``.

    With ``L`` layers, ``G`` KV heads, ``Q`` query heads per KV head, FFN width ``F`` and
    hidden width ``H``:

    ==================  ==============  ===========================================
    name                shape           prunes
    ==================  ==============  ===========================================
    ``layer``           ``(L,)``        a whole layer (attention and MLP)
    ``head_layer``      ``(L,)``        the attention block of a layer
    ``mlp``             ``(L,)``        the MLP block of a layer
    ``kv_group``        ``(L, G)``      a KV head together with its query heads
    ``head``            ``(L, G, Q)``   query heads inside a group (GQA only)
    ``intermediate``    ``(L, F)``      FFN channels
    ``hidden``          ``(H,)``        residual-stream channels
    ==================  ==============  ===========================================

    The last axis counts the units a mask prunes, so at a target shape it is the number of
    units kept per row.
    """
    layers, groups = shape.num_layers, shape.num_key_value_heads
    return {
        LAYER: (layers,),
        HEAD_LAYER: (layers,),
        MLP: (layers,),
        KV_GROUP: (layers, groups),
        HEAD: (layers, groups, shape.q_per_kv),
        INTERMEDIATE: (layers, shape.intermediate_size),
        HIDDEN: (shape.hidden_size,),
    }


def count_embedding_params(shape: ModelShape) -> int:
    """Parameters of ``embed_tokens`` plus ``lm_head`` (``V*H``, twice unless tied)."""
    per_matrix = shape.vocab_size * shape.hidden_size
    return per_matrix if shape.tie_word_embeddings else 2 * per_matrix


def count_layer_params(shape: ModelShape) -> int:
    """Parameters of one decoder layer, as Hugging Face Llama / Qwen2 modules hold them.

    q_proj ``H*nq*hd`` (+ ``nq*hd`` bias), k_proj and v_proj ``H*nkv*hd`` each (+ bias),
    o_proj ``nq*hd*H``, gate/up/down ``3*H*F``, and two RMSNorm weights ``2*H``.
    """
    hidden, head_dim = shape.hidden_size, shape.head_dim
    q_width = shape.num_attention_heads * head_dim
    kv_width = shape.num_key_value_heads * head_dim
    attention = 2 * hidden * q_width + 2 * hidden * kv_width
    if shape.attention_bias:
        attention += q_width + 2 * kv_width
    mlp = 3 * hidden * shape.intermediate_size
    return attention + mlp + 2 * hidden


def count_params(shape: ModelShape) -> int:
    """Exact parameter count of the model: embeddings, LM head, layers and the final norm."""
    return count_embedding_params(shape) + shape.num_layers * count_layer_params(shape) + shape.hidden_size


def count_non_embedding_params(shape: ModelShape) -> int:
    """:func:`count_params` without ``embed_tokens`` and (if untied) ``lm_head``."""
    return count_params(shape) - count_embedding_params(shape)


def validate_target(source: ModelShape, target: ModelShape) -> None:
    """Checks that ``target`` can be reached from ``source`` by structured pruning.

    Pruning only removes layers, KV groups, query heads within a group, FFN channels and
    hidden channels; it keeps head_dim, vocabulary, tying and biases.

    Raises:
        ValueError: listing every violated constraint, each naming its dimension.
    """
    problems = []
    for name in ('num_layers', 'num_attention_heads', 'num_key_value_heads', 'hidden_size', 'intermediate_size'):
        src, tgt = getattr(source, name), getattr(target, name)
        if tgt > src:
            problems.append(f'{name} ({tgt}) exceeds the source {name} ({src})')
    if target.num_attention_heads % target.num_key_value_heads:
        problems.append(f'num_attention_heads ({target.num_attention_heads}) is not divisible by '
                        f'num_key_value_heads ({target.num_key_value_heads})')
    elif target.q_per_kv > source.q_per_kv:
        problems.append(f'q_per_kv ({target.q_per_kv}) exceeds the source q_per_kv ({source.q_per_kv}); '
                        'pruning cannot add query heads to a KV group')
    for name in ('head_dim', 'vocab_size', 'tie_word_embeddings', 'attention_bias'):
        src, tgt = getattr(source, name), getattr(target, name)
        if tgt != src:
            problems.append(f'{name} ({tgt}) differs from the source {name} ({src}); pruning cannot change it')
    if problems:
        raise ConfigError('target shape: ' + '; '.join(problems))
