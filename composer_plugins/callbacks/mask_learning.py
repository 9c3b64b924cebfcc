"""Mask learning: the callback that owns the L0 masks' log-alphas (Sheared-LLaMA §2.1).

Registered as ``mask_learning``. It owns everything about how the masks learn, none of
which is the weights' optimizer's business:

* **Initialisation** at fit start, unless the run resumes (then the checkpoint has it):
  ``init: importance`` scores every structure with the one-shot activation importance of
  ``shear prune-oneshot`` on the ``calibration`` rows (rank 0's scores are broadcast, so
  every rank starts alike), keeps the top-k of each (the one-shot masks) and sets
  ``log_alpha`` by :func:`~composer_plugins.pruning.mask_init.log_alpha_from_keep`: the
  deterministic masks at step 0 *are* the one-shot masks and the expected sparsity starts at
  the target. The scores are saved in this callback's checkpoint state and never recomputed.
  ``init: dense`` is the paper's start, ``log((1 - d) / d)`` everywhere.
* **Optimisation**: Adam on the log-alphas, minimising ``lm + lagrangian`` (paper eq. 3),
  with its own learning rate and schedule (``constant`` or ``linear`` decay to 0), stepped
  at ``Event.AFTER_TRAIN_BATCH`` once the gradients of all microbatches are in; then the
  clamp to ``[LOG_ALPHA_MIN, LOG_ALPHA_MAX]``.
* **Settle phase**: in the last ``settle`` batches each mask is shifted back onto its final
  target sparsity after every step (:func:`~composer_plugins.pruning.mask_init.shift_to_sparsity`,
  a common shift that keeps the kept units), so the run ends with ``s_m = t_m``.

Metrics: ``l0/mask_lr``.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Optional

import torch
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

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
    total_batches,
    unpacked,
    write_full,
)
from composer_plugins.config.typed import from_dict, to_dict
from composer_plugins.pruning.config import MaskLearningConfig
from composer_plugins.pruning.hard_concrete import log_alpha_for_drop_prob
from composer_plugins.pruning.mask_init import log_alpha_from_keep, shift_to_sparsity

log = logging.getLogger(__name__)

STATE_VERSION = 1
NAME = 'mask_learning'
LAYER_MASKS = ('layer', 'head_layer', 'mlp')


class MaskLearning(Callback):
    """Owns the log-alphas: their initialisation, optimizer, learning rate schedule, clamp and settle phase.

    Their gradients are held out of ``.grad`` from backward to their step (:class:`HeldGradients`),
    so gradient clipping acts on the weights only.

    Args:
        **kwargs: the fields of :class:`~composer_plugins.pruning.config.MaskLearningConfig`,
            validated here (a bad key or value is one :class:`ConfigError` naming it).
    """

    callback_name = NAME
    """What :func:`~composer_plugins.callbacks.pruning_params.arm` looks for in the run's callbacks."""

    def __init__(self, **kwargs: Any) -> None:
        self.config: MaskLearningConfig = from_dict(MaskLearningConfig, kwargs, f'callbacks.{NAME}')
        self.importance: Optional[dict[str, torch.Tensor]] = None
        self._optimizer: Optional[torch.optim.Optimizer] = None
        self._names: list[str] = []
        self._saved: Optional[dict[str, Any]] = None
        self._total = 0
        self._held = HeldGradients()

    # -- events ---------------------------------------------------------------------------
    def init(self, state: State, logger: Logger) -> None:
        gates = arm(state, NAME).pruner.l0_masks
        removed = remove_from_optimizers(state.optimizers, gates.parameters())
        log.info('mask_learning: %d log-alpha tensors taken out of the weights\' optimizer', removed)

    def fit_start(self, state: State, logger: Logger) -> None:
        masks = pruning_model(state, NAME).pruner.l0_masks
        self._total = total_batches(state)
        self._names = masks.names
        params = [masks.gates[name].log_alpha for name in self._names]
        cfg = self.config
        self._optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
        if self._saved is not None:
            load_optimizer_state(self._optimizer, self._names, self._saved['optimizer'], NAME)
            self.importance = self._saved['importance']
            self._saved = None
            log.info('mask_learning: resumed (log-alphas and their optimizer state from the checkpoint)')
            return
        if cfg.init == 'importance':
            self._init_from_importance(state)
        else:
            value = log_alpha_for_drop_prob(cfg.init_drop_prob)
            for param in params:
                write_full(param, torch.full(param.shape, value))
            log.info('mask_learning: init dense, every log_alpha = %.4f', value)

    def after_backward(self, state: State, logger: Logger) -> None:
        self._held.take(self._params(state))

    def after_train_batch(self, state: State, logger: Logger) -> None:
        assert self._optimizer is not None
        self._held.give_back(self._params(state))
        step = int(state.timestamp.batch.value)
        lr = self._lr_at(step)
        for group in self._optimizer.param_groups:
            group['lr'] = lr
        self._optimizer.step()
        self._optimizer.zero_grad(set_to_none=True)
        masks = pruning_model(state, NAME).pruner.l0_masks
        masks.clamp_()
        if step + 1 > self._total - self.config.settle_batches:
            self._settle(masks)
        logger.log_metrics({'l0/mask_lr': lr})

    # -- pieces ---------------------------------------------------------------------------
    def _params(self, state: State) -> list[torch.nn.Parameter]:
        masks = pruning_model(state, NAME).pruner.l0_masks
        return [masks.gates[name].log_alpha for name in self._names]

    def _lr_at(self, step: int) -> float:
        """Learning rate at ``step``: constant, or linear from ``lr`` to 0 at ``max_duration``."""
        if self.config.lr_schedule == 'constant':
            return self.config.lr
        return self.config.lr * max(0.0, 1.0 - step / max(self._total, 1))

    def _settle(self, masks: Any) -> None:
        """Shifts each mask's log-alphas onto its final target sparsity (keeps each row's order)."""
        targets = masks.target_sparsity()
        for name in self._names:
            param = masks.gates[name].log_alpha
            write_full(param, shift_to_sparsity(full(param.detach()).cpu(), targets[name]))

    def _init_from_importance(self, state: State) -> None:
        from composer_plugins.data.calibration import calibration_rows
        from composer_plugins.importance.scores import measure_importance
        from composer_plugins.importance.select import select_masks

        model = pruning_model(state, NAME)
        pruner, cal = model.pruner, self.config.calibration
        assert cal is not None
        rows = calibration_rows(cal.data, cal.split, cal.domains, cal.rows)
        model.mask_applier.set_masks(None)
        scores = measure_importance(model.model, rows, cal.batch_size)
        self.importance = _broadcast_scores({'layer': scores.layer, 'head': scores.head,
                                             'intermediate': scores.intermediate, 'hidden': scores.hidden})
        scores = dataclasses.replace(scores, **self.importance)
        oneshot = select_masks(scores, pruner.source, pruner.target)
        targets = pruner.l0_masks.target_sparsity()
        for name in self._names:
            gate = pruner.l0_masks.gates[name]
            keep = oneshot.get('layer' if name in LAYER_MASKS else name)
            keep = torch.ones(gate.shape) if keep is None else keep
            write_full(gate.log_alpha, log_alpha_from_keep(keep, targets[name], self.config.init_margin))
        log.info('mask_learning: init importance from %d calibration rows (%d tokens) of %s; '
                 'the deterministic masks are the one-shot masks', len(rows), scores.tokens, cal.data)

    # -- checkpoint -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        optimizer = None if self._optimizer is None else optimizer_state(self._optimizer, self._names)
        return {'version': STATE_VERSION, 'config': to_dict(self.config),
                'packed': packed({'optimizer': optimizer, 'importance': self.importance})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = unpacked(state)
        if check_saved_state(state, STATE_VERSION, to_dict(self.config), NAME):
            self._saved = state


def _broadcast_scores(scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rank 0's scores on every rank (float32 on CPU), so all ranks initialise the same masks."""
    result = {}
    for name, value in scores.items():
        tensor = value.detach().float().cpu().contiguous()
        if dist.get_world_size() > 1:
            device_tensor = tensor.to(_dist_device())
            dist.broadcast(device_tensor, src=0)
            tensor = device_tensor.cpu()
        result[name] = tensor
    return result


def _dist_device() -> torch.device:
    return torch.device('cuda', torch.cuda.current_device()) if torch.cuda.is_available() else torch.device('cpu')
