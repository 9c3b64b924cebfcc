"""The dual update: the callback that owns the Lagrange multipliers and the target ramp (paper eq. 2 / 3).

Registered as ``lagrangian``. The constraint of mask m is
``lambda1_m (s_m - t_m) + lambda2_m (s_m - t_m)^2`` (Sheared-LLaMA eq. 2, computed in the
pruner's ``forward``); the weights and log-alphas minimise ``lm + sum_m`` of it and the
multipliers maximise it (eq. 3). This callback:

* feeds the step, the microbatch index within it (the gate noise is drawn per rank and per
  microbatch) and each mask's target ``t_m(step)`` to the model before every forward;
  the target ramps linearly over ``target_warmup`` batches from ``s_m`` at the first step
  (about 0 for a dense start, the target itself for an importance start) to the final
  target: ``t_m(n) = s_m0 + (t_m - s_m0) min(n / warmup, 1)``;
* steps the multipliers by gradient *ascent* at ``Event.AFTER_TRAIN_BATCH``:
  ``rule: adam`` (the paper's, Adam with ``maximize``) or ``rule: sgd``
  (``lambda1 += lr (s - t)``, ``lambda2 += lr (s - t)^2``), with its own learning rate,
  untouched by the weights' scheduler.

Metrics: ``l0/target_sparsity/<mask>`` is logged by ``pruning_monitor``.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

import torch
from composer.core import Callback, State
from composer.loggers import Logger

from composer_plugins.callbacks.pruning_params import (
    HeldGradients,
    arm,
    check_saved_state,
    full,
    load_optimizer_state,
    optimizer_state,
    packed,
    pruning_model,
    remove_from_optimizers,
    unpacked,
)
from composer_plugins.config.typed import from_dict, to_dict
from composer_plugins.pruning.config import LagrangianConfig
from composer_plugins.pruning.lagrangian import target_at_step
from composer_plugins.pruning.mask_init import expected_gate_sparsity

log = logging.getLogger(__name__)

STATE_VERSION = 1
NAME = 'lagrangian'


class LagrangianAscent(Callback):
    """Owns the multipliers: their ascent rule and optimizer, learning rate, and the target ramp.

    Args:
        **kwargs: the fields of :class:`~composer_plugins.pruning.config.LagrangianConfig`,
            validated here (a bad key or value is one :class:`ConfigError` naming it).
    """

    callback_name = NAME
    """What :func:`~composer_plugins.callbacks.pruning_params.arm` looks for in the run's callbacks."""

    def __init__(self, **kwargs: Any) -> None:
        self.config: LagrangianConfig = from_dict(LagrangianConfig, kwargs, f'callbacks.{NAME}')
        self.start_sparsity: Optional[dict[str, float]] = None
        self._optimizer: Optional[torch.optim.Optimizer] = None
        self._names: list[str] = []
        self._saved: Optional[dict[str, Any]] = None
        self._microbatch = 0
        self._held = HeldGradients()

    def init(self, state: State, logger: Logger) -> None:
        multipliers = arm(state, NAME).pruner.lagrangian
        remove_from_optimizers(state.optimizers, multipliers.parameters())

    def fit_start(self, state: State, logger: Logger) -> None:
        multipliers = pruning_model(state, NAME).pruner.lagrangian
        self._names = [f'lambda_{i}.{m}' for i in (1, 2) for m in multipliers.names]
        params = self._params(state)
        cfg = self.config
        if cfg.rule == 'adam':
            self._optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, maximize=True)
        else:
            self._optimizer = torch.optim.SGD(params, lr=cfg.lr, maximize=True)
        if self._saved is not None:
            load_optimizer_state(self._optimizer, self._names, self._saved['optimizer'], NAME)
            self.start_sparsity = dict(self._saved['start_sparsity'])
            self._saved = None

    def batch_start(self, state: State, logger: Logger) -> None:
        self._microbatch = 0

    def before_forward(self, state: State, logger: Logger) -> None:
        model = pruning_model(state, NAME)
        masks = model.pruner.l0_masks
        if self.start_sparsity is None:  # first step of a fresh run, after every fit_start (mask init)
            self.start_sparsity = {name: float(expected_gate_sparsity(full(masks.gates[name].log_alpha.detach())))
                                   for name in masks.names}
            log.info('lagrangian: targets ramp over %d batches from %s to %s', self.config.target_warmup_batches,
                     _rounded(self.start_sparsity), _rounded(masks.target_sparsity()))
        step = int(state.timestamp.batch.value)
        model.pruning_step = step
        model.pruning_microbatch = self._microbatch
        self._microbatch += 1
        model.pruning_targets = {
            name: target_at_step(final, step, self.config.target_warmup_batches, start=self.start_sparsity[name])
            for name, final in masks.target_sparsity().items()
        }

    def after_backward(self, state: State, logger: Logger) -> None:
        self._held.take(self._params(state))

    def after_train_batch(self, state: State, logger: Logger) -> None:
        assert self._optimizer is not None
        self._held.give_back(self._params(state))
        self._optimizer.step()
        self._optimizer.zero_grad(set_to_none=True)

    def _params(self, state: State) -> list[torch.nn.Parameter]:
        """The multipliers in the optimizer's order: every lambda_1, then every lambda_2."""
        multipliers = pruning_model(state, NAME).pruner.lagrangian
        return [multipliers.lambda_1[m] for m in multipliers.names] + \
               [multipliers.lambda_2[m] for m in multipliers.names]

    def state_dict(self) -> dict[str, Any]:
        optimizer = None if self._optimizer is None else optimizer_state(self._optimizer, self._names)
        return {'version': STATE_VERSION, 'config': to_dict(self.config),
                'packed': packed({'start_sparsity': self.start_sparsity, 'optimizer': optimizer})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = unpacked(state)
        if check_saved_state(state, STATE_VERSION, to_dict(self.config), NAME):
            self._saved = state


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in values.items()}
