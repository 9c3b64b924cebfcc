"""Typed arguments of the data and logging callbacks (no torch import, checked at config load).

The pruning callbacks' arguments live with the pruning config
(:class:`~composer_plugins.pruning.config.MaskLearningConfig`,
:class:`~composer_plugins.pruning.config.LagrangianConfig`), the guard's in
:mod:`composer_plugins.config.guards`; :mod:`composer_plugins.config.callback_schemas`
names the dataclass of every callback this package registers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

from composer_plugins.data.domain_weights import per_domain_values
from composer_plugins.errors import ConfigError

DEFAULT_BOUNDED_FLOOR = 0.3
"""Default ``floor`` of rule ``bounded`` (:data:`composer_plugins.data.weight_rules.BOUNDED_FLOOR`, kept
here so that config load does not import numpy; a test keeps the two equal)."""

WeightRule = Literal['doremi', 'bounded', 'constant']
"""The names of :data:`composer_plugins.data.weight_rules.RULES`."""


@dataclass
class DynamicLoadingConfig:
    """``callbacks.dynamic_loading``: how each interval's eval losses re-weight the domains (paper Algorithm 1).

    Attributes:
        rule: ``doremi`` (the paper's, w ∝ w·exp(max(l − ref, 0))), ``bounded`` (a relative gap
            max(l − ref, 0) / ref and a floor of ``floor / k`` per domain) or ``constant``.
        ref_losses: reference loss per domain, as a mapping or a list in domain order
            (required by ``doremi`` and ``bounded``; checked against the run's domains at load).
        clamp_gap: clamp the loss gap at 0 (paper); false matches the original code.
        smoothing: weight of the uniform distribution mixed into the new weights (``doremi``).
        floor: ``f`` of rule ``bounded``: each domain keeps at least ``f / k`` of the mixture.
        weights_file: if set, rank 0 writes the latest weights there after every update
            (``{"batch": b, "domains": {...}}``), which a later stage reads with
            ``train_loader.dataset.weights_from``.
    """
    rule: WeightRule = 'doremi'
    ref_losses: Optional[Union[dict[str, Any], list[Any]]] = None
    clamp_gap: bool = True
    smoothing: float = 0.0
    floor: float = DEFAULT_BOUNDED_FLOOR
    weights_file: Optional[str] = None

    def validate(self, path: str) -> None:
        if self.rule in ('doremi', 'bounded') and self.ref_losses is None:
            raise ConfigError(f'{path}.ref_losses: required by rule {self.rule}')
        for key in ('floor', 'smoothing'):
            value = getattr(self, key)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f'{path}.{key}: got {value}; expected a value in [0, 1)')
        if self.ref_losses is not None:
            self.ref_losses = _finite_losses(self.ref_losses, f'{path}.ref_losses')
            values = self.ref_losses.values() if isinstance(self.ref_losses, dict) else self.ref_losses
            if self.rule == 'bounded' and any(v <= 0 for v in values):
                raise ConfigError(f'{path}.ref_losses: rule bounded divides by the reference; got '
                                  f'{self.ref_losses}, expected positive losses')


def _finite_losses(values: Union[dict[str, Any], list[Any]], path: str) -> Union[dict[str, float], list[float]]:
    """``values`` with every entry a finite float (which domains they must cover is the run's to check)."""
    if isinstance(values, dict):
        return dict(zip(values, per_domain_values(values, list(values), path)))
    return per_domain_values(values, [f'#{i}' for i in range(len(values))], path)


@dataclass
class PruningMonitorConfig:
    """``callbacks.pruning_monitor``: where the deterministic masks of each evaluation go.

    Attributes:
        masks_dir: folder of the ``step<N>.pt`` / ``step<N>.txt`` snapshots (usually ``<run folder>/masks``).
    """
    masks_dir: str


@dataclass
class SampleLogConfig:
    """``callbacks.sample_log``: where each rank's record of the samples it trained on goes.

    Attributes:
        out_dir: folder of the per-rank ``rank<r>.jsonl`` files (appended to across restarts).
    """
    out_dir: str
