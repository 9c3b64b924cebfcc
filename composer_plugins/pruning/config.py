"""Typed ``model.pruning`` section of a run YAML (pure Python)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Union

from composer_plugins.errors import ConfigError
from composer_plugins.pruning.hard_concrete import DEFAULT_INIT_DROP_PROB
from composer_plugins.pruning.shapes import ModelShape

MaskType = Literal['layer', 'head_layer', 'mlp', 'kv_group', 'head', 'intermediate', 'hidden']


@dataclass
class TargetShapeConfig:
    """The shape the pruned model must have exactly."""
    num_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    hidden_size: int
    intermediate_size: int

    def to_shape(self, source: ModelShape) -> ModelShape:
        """The target as a :class:`ModelShape` (head_dim, vocabulary and tying follow the source)."""
        return ModelShape(
            num_layers=self.num_layers,
            hidden_size=self.hidden_size,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            head_dim=source.head_dim,
            intermediate_size=self.intermediate_size,
            vocab_size=source.vocab_size,
            tie_word_embeddings=source.tie_word_embeddings,
            attention_bias=source.attention_bias,
        )


@dataclass
class PruningConfig:
    """``model.pruning``: learn L0 masks to reach ``target`` (paper §2.1).

    Attributes:
        target: the exact target shape.
        mask_types: structures to prune (``layer`` or ``head_layer`` + ``mlp``, ``kv_group``,
            ``head``, ``intermediate``, ``hidden``); default: every structure the model has
            (``head`` only with grouped-query attention).
        lagrangian_warmup: batches (``640ba`` or 640) over which the target sparsity ramps
            linearly from 0 to its final value.
        init_drop_prob: initial drop probability of every gate (small = keep everything).
        sample_seed: seed of the gate noise; the noise of step n depends only on
            (sample_seed, n), so a resumed run replays it exactly.
    """
    target: TargetShapeConfig
    lagrangian_warmup: Union[int, str] = 0
    mask_types: Optional[list[MaskType]] = None
    init_drop_prob: float = DEFAULT_INIT_DROP_PROB
    sample_seed: int = 0

    @property
    def lagrangian_warmup_batches(self) -> int:
        value = self.lagrangian_warmup
        if isinstance(value, str):
            if not value.endswith('ba') or not value[:-2].isdigit():
                raise ConfigError(f'model.pruning.lagrangian_warmup: got {value!r}; expected batches like 640ba')
            return int(value[:-2])
        return value

    def validate(self, path: str) -> None:
        _ = self.lagrangian_warmup_batches
        if not 0.0 < self.init_drop_prob < 1.0:
            raise ConfigError(f'{path}.init_drop_prob: got {self.init_drop_prob}; expected a value in (0, 1)')
        if self.mask_types is not None and len(set(self.mask_types)) != len(self.mask_types):
            raise ConfigError(f'{path}.mask_types: {self.mask_types} lists a mask type twice')
