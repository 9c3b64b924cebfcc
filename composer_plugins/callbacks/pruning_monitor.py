"""Pruning logging: l0/* metrics every batch and the deterministic masks at each evaluation.

It only reads: the log-alphas belong to ``callbacks.mask_learning`` and the multipliers
and target ramp to ``callbacks.lagrangian``.

Metric keys logged every batch (``<mask>`` is each mask type of the run):

* ``l0/expected_sparsity/<mask>``: expected sparsity s_m of the L0 gates;
* ``l0/target_sparsity/<mask>``: t_m on its warm-up ramp at this step;
* ``l0/lambda1/<mask>``, ``l0/lambda2/<mask>``: the Lagrange multipliers (paper eq. 2);
* ``l0/expected_params``: expected parameter count of the masked model.

Composer itself logs ``loss/train/lagrangian`` and ``loss/train/lm`` from the loss dict.
After each evaluation, rank 0 writes the deterministic masks to
``<masks_dir>/step<N>.pt`` and a readable ``<masks_dir>/step<N>.txt``; with W&B on, the
``wandb_visuals`` callback logs the same masks' per-layer heatmap as the image ``masks/heatmap``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

from composer_plugins.callbacks.pruning_params import full, pruning_model
from composer_plugins.config.callback_args import PruningMonitorConfig
from composer_plugins.config.typed import from_dict
from composer_plugins.errors import ShearError
from composer_plugins.models.causal_lm import ShearCausalLM
from composer_plugins.models.mask_summary import summarize_masks

log = logging.getLogger(__name__)

STATE_VERSION = 1
NAME = 'pruning_monitor'


class PruningMonitor(Callback):
    """Registered as ``pruning_monitor``.

    Args:
        **kwargs: the fields of :class:`~composer_plugins.config.callback_args.PruningMonitorConfig`
            (``masks_dir``: folder for the mask snapshots), validated here.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.config: PruningMonitorConfig = from_dict(PruningMonitorConfig, kwargs, f'callbacks.{NAME}')
        self.masks_dir = Path(self.config.masks_dir)
        self._mask_names: list[str] = []

    def _model(self, state: State) -> ShearCausalLM:
        return pruning_model(state, NAME)

    def fit_start(self, state: State, logger: Logger) -> None:
        self._mask_names = self._model(state).pruner.l0_masks.names

    def batch_end(self, state: State, logger: Logger) -> None:
        model = self._model(state)
        out = model.last_pruner_output
        if out is None:
            return
        metrics: dict[str, Any] = {'l0/expected_params': float(out.expected_params.detach())}
        for name in model.pruner.l0_masks.names:
            metrics[f'l0/expected_sparsity/{name}'] = float(out.expected_sparsity[name].detach())
            metrics[f'l0/target_sparsity/{name}'] = float(out.target_sparsity[name])
            metrics[f'l0/lambda1/{name}'] = _scalar(model.pruner.lagrangian.lambda_1[name])
            metrics[f'l0/lambda2/{name}'] = _scalar(model.pruner.lagrangian.lambda_2[name])
        logger.log_metrics(metrics)

    def eval_after_all(self, state: State, logger: Logger) -> None:
        model = self._model(state)
        out = model.last_pruner_output
        if out is None or dist.get_global_rank() != 0:
            return
        step = int(state.timestamp.batch.value)
        self.masks_dir.mkdir(parents=True, exist_ok=True)
        masks = {name: mask.detach().cpu() for name, mask in out.masks.items()}
        torch.save(masks, self.masks_dir / f'step{step}.pt')
        summary = summarize_masks(masks, model.pruner.source, model.pruner.target)
        (self.masks_dir / f'step{step}.txt').write_text(summary)
        log.info('Deterministic masks at step %d written to %s', step, self.masks_dir / f'step{step}.pt')

    def state_dict(self) -> dict[str, Any]:
        return {'version': STATE_VERSION, 'mask_names': self._mask_names}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get('version') != STATE_VERSION:
            raise ShearError(f'pruning_monitor state version {state.get("version")} != {STATE_VERSION}')
        self._mask_names = list(state['mask_names'])


def _scalar(tensor: torch.Tensor) -> float:
    """A 1-element parameter as a float, gathered first if FSDP2 sharded it."""
    return float(full(tensor).detach().reshape(-1)[0])
