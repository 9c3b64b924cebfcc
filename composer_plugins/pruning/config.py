"""Typed ``model.pruning`` section of a run YAML (pure Python)."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Literal, Optional, Union

from composer_plugins.errors import ConfigError
from composer_plugins.pruning.shapes import ModelShape

DEFAULT_INIT_DROP_PROB = 0.01
"""Default ``d`` of the initialisation ``log_alpha = log(1 - d) - log(d)`` (about 4.595).

At that value ``keep_prob()`` is about 0.998 and about 95 % of training samples are
exactly 1, so pruning starts from (almost exactly) the dense source model.
"""

DEFAULT_IMPORTANCE_MARGIN = 7.0
"""Default ``init_margin``: ``|log_alpha|`` of kept / pruned units of ``init: importance`` before the shift.

7 is beyond both ends of the clamp (``[-log 100, log 1000]``), so kept units start at its top and
pruned ones at its bottom: the one-shot masks meet the target as they are (sparsities count
the keep probability over the clamp's range), a kept unit's sample is below 1 in 0.5 % of the
steps, and a pruned unit still has a gradient 4.7 % of the time, so it can come back.
Measured on the shipped run (first 10 batches): margin 3 (kept units near 3) put the training
loss at 9 to 12 nats on a fifth of the steps; at the clamp it follows the noise-free run's.
"""

DEFAULT_MASK_LR = 0.5
"""Default learning rate of the log-alphas' Adam: the smallest rate at which units leave the clamp.

Measured on the planted-structure tests (tests/callbacks/test_planted_structure.py, 60 steps):
at 0.1 and 0.2 no unit of the wrong importance start moves (22 % of the pruned set on the
planted channels, as frozen; 23 % still after 150 steps at 0.1), at 0.5 97 % (dense start:
97 %). On SmolLM2 the same rate costs loss at short budgets: ``yamls/prune.yaml`` (30 batches)
freezes the masks, see its comment and the README.
"""

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
    """``model.pruning``: the L0 masks that prune the model to ``target`` (paper §2.1).

    The model holds only the masks and their hooks; how they learn belongs to two
    callbacks, ``callbacks.mask_learning`` (log-alphas) and ``callbacks.lagrangian``
    (multipliers and the target ramp).

    Attributes:
        target: the exact target shape.
        mask_types: structures to prune (``layer`` or ``head_layer`` + ``mlp``, ``kv_group``,
            ``head``, ``intermediate``, ``hidden``); default: every structure the model has
            (``head`` only with grouped-query attention).
        sample_seed: seed of the gate noise; the noise of one forward depends only on
            (sample_seed, batch, rank, microbatch), so a resumed run replays it exactly.
        eval_target_masks: what evaluation during pruning (and so dynamic loading's loss
            gaps) scores: ``true``, the target-shaped deterministic masks (what the export
            will ship); ``false``, the model the gates describe now, each row keeping the
            rounded expected number of its units (the original code's ``eval_target_model:
            false``). Export always uses the target shape.
        lagrangian_warmup, init_drop_prob: moved to the callbacks; setting them is an
            error that names the new key.
    """
    target: TargetShapeConfig
    mask_types: Optional[list[MaskType]] = None
    sample_seed: int = 0
    eval_target_masks: bool = True
    lagrangian_warmup: Optional[Union[int, str]] = None
    init_drop_prob: Optional[float] = None

    def validate(self, path: str) -> None:
        moved = {'lagrangian_warmup': 'callbacks.lagrangian.target_warmup',
                 'init_drop_prob': 'callbacks.mask_learning.init_drop_prob (with init: dense)'}
        for key, new_key in moved.items():
            if getattr(self, key) is not None:
                raise ConfigError(f'{path}.{key}: moved; set {new_key} instead')
        if self.mask_types is not None and len(set(self.mask_types)) != len(self.mask_types):
            raise ConfigError(f'{path}.mask_types: {self.mask_types} lists a mask type twice')


def batches(value: Union[int, str], path: str) -> int:
    """``640ba`` or ``640`` as a number of batches (>= 0)."""
    if isinstance(value, str):
        if not value.endswith('ba') or not value[:-2].isdigit():
            raise ConfigError(f'{path}: got {value!r}; expected batches like 640ba')
        return int(value[:-2])
    if isinstance(value, bool) or value < 0:
        raise ConfigError(f'{path}: got {value!r}; expected a number of batches >= 0')
    return value


def _check_positive(path: str, **values: float) -> None:
    for key, value in values.items():
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f'{path}.{key}: got {value}; expected a finite number > 0')


def _check_betas(path: str, betas: list[float]) -> None:
    if len(betas) != 2 or not all(math.isfinite(b) and 0.0 <= b < 1.0 for b in betas):
        raise ConfigError(f'{path}.betas: got {betas}; expected two numbers in [0, 1)')


@dataclass
class CalibrationConfig:
    """Rows the importance scores of ``init: importance`` are measured on (as ``shear prune-oneshot``).

    Attributes:
        data: ``shear prep`` output (``<data>/<domain>/<split>``) or one MDS folder with ``<split>/``.
        rows: calibration rows in all, spread evenly over the domains.
        split: split the rows come from (``train``: never the eval data).
        domains: domains to take rows from (default: all of ``data``'s).
        batch_size: rows per forward pass.
    """
    data: str
    rows: int = 64
    split: str = 'train'
    domains: Optional[list[str]] = None
    batch_size: int = 4

    def validate(self, path: str) -> None:
        if not os.path.isdir(self.data):
            raise ConfigError(f'{path}.data: {self.data!r} is not a directory (expected shear prep output)')
        if self.rows < 1 or self.batch_size < 1:
            raise ConfigError(f'{path}: rows ({self.rows}) and batch_size ({self.batch_size}) must be >= 1')


@dataclass
class MaskLearningConfig:
    """``callbacks.mask_learning``: how the log-alphas start and learn.

    Attributes:
        init: ``importance`` (default): log-alphas from the one-shot activation importance
            of ``calibration`` rows, so the initial deterministic masks are the one-shot masks
            and the expected sparsity starts at the target; ``dense``: the paper's start,
            every gate at ``log((1 - d) / d)`` with ``d = init_drop_prob``.
        calibration: the rows of ``init: importance`` (required for it).
        init_drop_prob: ``d`` of ``init: dense``.
        init_margin: ``|log_alpha|`` of kept / pruned units of ``init: importance`` before
            they are shifted onto the target (at most the clamp, ``log 100``).
        lr, betas, eps: Adam on the log-alphas (their own optimizer, not the weights');
            ``lr: 0`` freezes the masks (the settle phase still projects them onto the target).
        lr_schedule: ``constant`` or ``linear`` decay to 0 at ``max_duration``.
        settle: the last batches of the run in which, after each step, every mask's
            log-alphas are shifted onto its final target sparsity (a common shift per mask,
            which keeps the kept units): the run ends at the target.
    """
    init: Literal['importance', 'dense'] = 'importance'
    calibration: Optional[CalibrationConfig] = None
    init_drop_prob: float = DEFAULT_INIT_DROP_PROB
    init_margin: float = DEFAULT_IMPORTANCE_MARGIN
    lr: float = DEFAULT_MASK_LR
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    lr_schedule: Literal['constant', 'linear'] = 'constant'
    settle: Union[int, str] = 0

    @property
    def settle_batches(self) -> int:
        return batches(self.settle, 'callbacks.mask_learning.settle')

    def validate(self, path: str) -> None:
        _check_positive(path, eps=self.eps, init_margin=self.init_margin)
        if not (math.isfinite(self.lr) and self.lr >= 0):
            raise ConfigError(f'{path}.lr: got {self.lr}; expected a finite number >= 0 (0 freezes the masks)')
        _check_betas(path, self.betas)
        batches(self.settle, f'{path}.settle')
        if not 0.0 < self.init_drop_prob < 1.0:
            raise ConfigError(f'{path}.init_drop_prob: got {self.init_drop_prob}; expected a value in (0, 1)')
        if self.init == 'importance' and self.calibration is None:
            raise ConfigError(f'{path}.calibration: required with init: importance '
                              '(e.g. calibration: {data: <shear prep output>, rows: 64})')


@dataclass
class LagrangianConfig:
    """``callbacks.lagrangian``: the multipliers of paper eq. 2 and the target ramp.

    Attributes:
        lr: learning rate of the ascent on the multipliers.
        rule: ``adam`` (the paper's: Adam with ``maximize``) or ``sgd`` (plain gradient
            ascent, ``lambda += lr * dL/dlambda``).
        betas, eps: Adam's, for ``rule: adam``.
        target_warmup: batches over which each target ramps linearly from the expected
            sparsity at the start of the run (about 0 for ``init: dense``, the target for
            ``init: importance``) to its final value.
    """
    lr: float = 0.1
    rule: Literal['adam', 'sgd'] = 'adam'
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    target_warmup: Union[int, str] = 0

    @property
    def target_warmup_batches(self) -> int:
        return batches(self.target_warmup, 'callbacks.lagrangian.target_warmup')

    def validate(self, path: str) -> None:
        _check_positive(path, lr=self.lr, eps=self.eps)
        _check_betas(path, self.betas)
        batches(self.target_warmup, f'{path}.target_warmup')


MASK_CALLBACKS = {'mask_learning': 'the log-alphas: init, optimizer, settle',
                  'lagrangian': 'the multipliers (ascent, out of the weights\' optimizer), the target ramp and '
                                'the gate noise of each batch'}
"""The callbacks that train the masks, which ``model.pruning`` needs: ``{name: what it owns}``."""


def require_armed(armed_by: set[str]) -> None:
    """Raises one :class:`ConfigError` naming the first mask callback in :data:`MASK_CALLBACKS` not in ``armed_by``.

    Without ``lagrangian`` the multipliers would stay in the weights' optimizer (minimised, not
    maximised) and every batch would draw the gate noise of batch 0; without ``mask_learning``
    the log-alphas would be trained by the weights' optimizer and never settle on the target.
    """
    for name, role in MASK_CALLBACKS.items():
        if name not in armed_by:
            raise ConfigError(f'callbacks.{name}: required with model.pruning (it owns {role}); add it to callbacks')
