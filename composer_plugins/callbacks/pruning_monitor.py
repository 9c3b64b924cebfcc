"""Pruning logging: l0/* metrics every batch and the deterministic masks at each evaluation.

It only reads: the log-alphas belong to ``callbacks.mask_learning`` and the multipliers
and target ramp to ``callbacks.lagrangian``.

Metric keys logged every batch (``<mask>`` is each mask type of the run):

* ``l0/expected_sparsity/<mask>``: expected sparsity s_m of the L0 gates;
* ``l0/target_sparsity/<mask>``: t_m on its warm-up ramp at this step;
* ``l0/lambda1/<mask>``, ``l0/lambda2/<mask>``: the Lagrange multipliers (paper eq. 2);
* ``l0/expected_params``: expected parameter count of the masked model;
* ``l0/changed_units/<mask>``: how many units' keep/prune decisions (the target-shaped
  deterministic mask: the top ``k`` log-alphas of every row) differ from the decisions at
  step 0, before the first update. 0 all run long means the run kept its initial masks;
* ``l0/decision_margin/<mask>``: the share of gates that are undecided, with a keep
  probability (over the clamp's range, as the sparsities count it) strictly between 0.05 and
  0.95 (:data:`UNDECIDED`). Gates at the clamp are decided; they can still change, as a gate
  at the clamp still has a gradient 4.7 % of the time.

At fit end one INFO line names the masks whose decisions never changed after the target
warm-up of the ``lagrangian`` callback (for ``init: importance`` with no warm-up: after
step 0), i.e. the masks that were not learned.

Composer itself logs ``loss/train/lagrangian`` and ``loss/train/lm`` from the loss dict.
After each evaluation, rank 0 writes the target-shaped deterministic masks to
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

from composer_plugins.callbacks.pruning_params import full, packed, pruning_model, unpacked
from composer_plugins.config.callback_args import PruningMonitorConfig
from composer_plugins.config.typed import from_dict
from composer_plugins.errors import ShearError
from composer_plugins.models.causal_lm import ShearCausalLM
from composer_plugins.models.mask_summary import summarize_masks
from composer_plugins.pruning.hard_concrete import kept_fraction_of

log = logging.getLogger(__name__)

STATE_VERSION = 2
_READABLE_VERSIONS = (1, 2)  # version 1 held no keep decisions
NAME = 'pruning_monitor'
UNDECIDED = (0.05, 0.95)
"""Keep probabilities strictly inside this interval count towards ``l0/decision_margin``."""


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
        self._initial: dict[str, torch.Tensor] = {}  # keep decisions at step 0
        self._previous: dict[str, torch.Tensor] = {}  # keep decisions after the last batch
        self._last_change: dict[str, int] = {}  # last batch whose update changed a decision

    def _model(self, state: State) -> ShearCausalLM:
        return pruning_model(state, NAME)

    def fit_start(self, state: State, logger: Logger) -> None:
        self._mask_names = self._model(state).pruner.l0_masks.names

    def batch_start(self, state: State, logger: Logger) -> None:
        if not self._initial:  # after every fit_start (the masks' initialisation), before the first update
            model = self._model(state)
            self._initial = _decisions(model, _gathered_log_alphas(model))
            self._previous = dict(self._initial)

    def batch_end(self, state: State, logger: Logger) -> None:
        model = self._model(state)
        out = model.last_pruner_output
        if out is None:
            return
        step = int(state.timestamp.batch.value)
        gathered = _gathered_log_alphas(model)  # one gather per mask under FSDP2, for both metrics
        decisions = _decisions(model, gathered)
        metrics: dict[str, Any] = {'l0/expected_params': float(out.expected_params.detach())}
        for name in model.pruner.l0_masks.names:
            metrics[f'l0/expected_sparsity/{name}'] = float(out.expected_sparsity[name].detach())
            metrics[f'l0/target_sparsity/{name}'] = float(out.target_sparsity[name])
            metrics[f'l0/lambda1/{name}'] = _scalar(model.pruner.lagrangian.lambda_1[name])
            metrics[f'l0/lambda2/{name}'] = _scalar(model.pruner.lagrangian.lambda_2[name])
            metrics[f'l0/changed_units/{name}'] = int((decisions[name] != self._initial[name]).sum())
            probs = kept_fraction_of(gathered[name])
            metrics[f'l0/decision_margin/{name}'] = float(((probs > UNDECIDED[0]) & (probs < UNDECIDED[1]))
                                                          .float().mean())
            if not torch.equal(decisions[name], self._previous[name]):
                self._last_change[name] = step
        self._previous = decisions
        logger.log_metrics(metrics)

    def fit_end(self, state: State, logger: Logger) -> None:
        warmup = _target_warmup(state)
        frozen = [name for name in self._mask_names if self._last_change.get(name, 0) <= warmup]
        if frozen:
            log.info('pruning_monitor: the keep/prune decisions of mask(s) %s did not change after %s: '
                     'the run kept those masks as they were then, nothing was learned about them',
                     ', '.join(frozen), f'the target warm-up (batch {warmup})' if warmup else 'step 0')

    def eval_after_all(self, state: State, logger: Logger) -> None:
        model = self._model(state)
        if model.last_pruner_output is None:
            return
        masks = _decisions(model, _gathered_log_alphas(model), values=True)  # a collective under FSDP2: every rank
        if dist.get_global_rank() != 0:
            return
        step = int(state.timestamp.batch.value)
        self.masks_dir.mkdir(parents=True, exist_ok=True)
        torch.save(masks, self.masks_dir / f'step{step}.pt')
        summary = summarize_masks(masks, model.pruner.source, model.pruner.target)
        (self.masks_dir / f'step{step}.txt').write_text(summary)
        log.info('Deterministic masks at step %d written to %s', step, self.masks_dir / f'step{step}.pt')

    def state_dict(self) -> dict[str, Any]:
        return {'version': STATE_VERSION, 'mask_names': self._mask_names,
                'packed': packed({'initial': self._initial, 'previous': self._previous,
                                  'last_change': self._last_change})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = unpacked(state)
        if state.get('version') not in _READABLE_VERSIONS:
            raise ShearError(f'pruning_monitor state version {state.get("version")} is not one of {_READABLE_VERSIONS}')
        self._mask_names = list(state['mask_names'])
        if state['version'] == 1:  # saved before decisions were tracked: they count from the resumed batch on
            log.info('pruning_monitor: resumed from a checkpoint without keep decisions; l0/changed_units counts '
                     'from the first resumed batch')
            return
        self._initial = dict(state['initial'])
        self._previous = dict(state['previous'])
        self._last_change = dict(state['last_change'])


def _gathered_log_alphas(model: ShearCausalLM) -> dict[str, torch.Tensor]:
    """Every gate's whole ``log_alpha`` (gathered if FSDP2 sharded it: a collective, call it on every rank)."""
    return {name: full(gate.log_alpha.detach()) for name, gate in model.pruner.l0_masks.gates.items()}


def _decisions(model: ShearCausalLM, gathered: dict[str, torch.Tensor],
               values: bool = False) -> dict[str, torch.Tensor]:
    """The target-shaped deterministic masks (CPU), as keep decisions (bool) or with their values."""
    return {name: mask.cpu() if values else mask.cpu() > 0
            for name, mask in model.pruner.l0_masks.deterministic(log_alphas=gathered).items()}


def _target_warmup(state: State) -> int:
    from composer_plugins.callbacks.lagrangian import LagrangianAscent

    ascent = next((c for c in state.callbacks if isinstance(c, LagrangianAscent)), None)
    return ascent.config.target_warmup_batches if ascent is not None else 0


def _scalar(tensor: torch.Tensor) -> float:
    """A 1-element parameter as a float, gathered first if FSDP2 sharded it."""
    return float(full(tensor).detach().reshape(-1)[0])
