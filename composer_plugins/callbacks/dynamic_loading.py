"""Dynamic batch loading: re-weight the domains from each domain's loss gap (paper Algorithm 1).

After every evaluation (one per interval, ``eval_interval`` = the loader's
``interval_batches``) it reads each domain's eval loss from the evaluator labelled with
the domain's name, applies the rule and hands the next interval's weights to the
``domain_mixture`` train dataset.

Metric keys:

* ``eval/<domain>/loss``: the domain's eval cross entropy;
* ``data/weight/<domain>``: the weight of the next interval;
* ``data/weight_entropy``: the entropy of those weights in nats (``ln k`` is uniform, 0 one domain);
* ``data/samples/<domain>``: samples drawn from the domain so far (every batch).
"""
from __future__ import annotations

import logging
from typing import Any, Optional, Union

import numpy as np
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

from composer_plugins.data.mixture_loader import DomainMixtureDataset
from composer_plugins.data.domain_weights import per_domain_values, write_domain_weights
from composer_plugins.data.weight_rules import BOUNDED_FLOOR, RULES, weight_entropy
from composer_plugins.errors import ShearError

log = logging.getLogger(__name__)

STATE_VERSION = 1


class DynamicLoading(Callback):
    """Registered as ``dynamic_loading``.

    Args:
        rule: ``doremi`` (the paper's, w ∝ w·exp(max(l − ref, 0))), ``bounded`` (a relative gap
            max(l − ref, 0) / ref and a floor of ``floor / k`` per domain:
            :func:`~composer_plugins.data.weight_rules.bounded_update`) or ``constant``.
        ref_losses: reference loss per domain, as a mapping or a list in domain order.
        clamp_gap: clamp the loss gap at 0 (paper); False matches the original code.
        smoothing: weight of the uniform distribution mixed into the new weights (``doremi``).
        floor: ``f`` of rule ``bounded``: each domain keeps at least ``f / k`` of the mixture.
        weights_file: if set, rank 0 writes the latest weights there after every update
            (``{"batch": b, "domains": {...}}``), which a later stage reads with
            ``train_loader.dataset.weights_from``.
    """

    def __init__(
        self, rule: str = 'doremi', ref_losses: Union[dict[str, float], list[float], None] = None,
        clamp_gap: bool = True, smoothing: float = 0.0, weights_file: Optional[str] = None,
        floor: float = BOUNDED_FLOOR,
    ) -> None:
        if rule not in RULES:
            raise ShearError(f'callbacks.dynamic_loading.rule: got {rule!r}; expected one of {sorted(RULES)}')
        if rule in ('doremi', 'bounded') and ref_losses is None:
            raise ShearError(f'callbacks.dynamic_loading.ref_losses: required by rule {rule}')
        if not 0.0 <= floor < 1.0:
            raise ShearError(f'callbacks.dynamic_loading.floor: got {floor}; expected a value in [0, 1)')
        if not 0.0 <= smoothing < 1.0:
            raise ShearError(f'callbacks.dynamic_loading.smoothing: got {smoothing}; expected a value in [0, 1)')
        self.rule = rule
        self.ref_losses_cfg = ref_losses
        self.clamp_gap = clamp_gap
        self.smoothing = smoothing
        self.floor = floor
        self.weights_file = weights_file
        self.history: list[dict[str, Any]] = []

    def _dataset(self, state: State) -> DomainMixtureDataset:
        dataset = getattr(state.train_dataloader, 'dataset', None)
        if not isinstance(dataset, DomainMixtureDataset):
            raise ShearError('callbacks.dynamic_loading needs train_loader.name: domain_mixture')
        return dataset

    def _ref_losses(self, domains: list[str]) -> np.ndarray:
        refs = self.ref_losses_cfg
        if refs is None:
            return np.zeros(len(domains))
        values = np.array(per_domain_values(refs, domains, 'callbacks.dynamic_loading.ref_losses'))
        if self.rule == 'bounded' and (values <= 0).any():
            bad = {d: float(v) for d, v in zip(domains, values) if v <= 0}
            raise ShearError(f'callbacks.dynamic_loading.ref_losses: rule bounded divides by the reference; '
                             f'got {bad}, expected positive losses')
        return values

    def fit_start(self, state: State, logger: Logger) -> None:
        dataset = self._dataset(state)
        self._ref_losses(dataset.domains)  # fail early on a mismatch
        labels = {label.split('/')[-1] for label in state.eval_metrics} if state.eval_metrics else set()
        evaluator_labels = {ev.label.split('/')[-1] for ev in state.evaluators}
        missing = [d for d in dataset.domains if d not in evaluator_labels | labels]
        if missing:
            raise ShearError(
                f'callbacks.dynamic_loading: no evaluator labelled with domain(s) {missing}; add one eval_loaders '
                'entry per domain with label: <domain>',
            )

    def batch_end(self, state: State, logger: Logger) -> None:
        dataset = self._dataset(state)
        consumed = dataset.consumed_per_domain(int(state.timestamp.sample_in_epoch))
        logger.log_metrics({f'data/samples/{d}': int(n) for d, n in zip(dataset.domains, consumed)})

    def eval_after_all(self, state: State, logger: Logger) -> None:
        dataset = self._dataset(state)
        losses = np.array([self._domain_loss(state, domain) for domain in dataset.domains])
        refs = self._ref_losses(dataset.domains)
        new = RULES[self.rule](
            dataset.next_weights, losses, refs, clamp_gap=self.clamp_gap, smoothing=self.smoothing, floor=self.floor,
        )
        dataset.set_weights(new)
        step = int(state.timestamp.batch)
        self.history.append({'batch': step, 'losses': losses.tolist(), 'weights': new.tolist()})
        metrics: dict[str, float] = {'data/weight_entropy': weight_entropy(new)}
        for domain, loss, weight in zip(dataset.domains, losses, new):
            metrics[f'eval/{domain}/loss'] = float(loss)
            metrics[f'data/weight/{domain}'] = float(weight)
        logger.log_metrics(metrics)
        if self.weights_file is not None and dist.get_global_rank() == 0:
            write_domain_weights(self.weights_file, step, dict(zip(dataset.domains, new.tolist())))
        log.info('Batch %d: domain weights %s', step, dict(zip(dataset.domains, np.round(new, 4).tolist())))

    @staticmethod
    def _domain_loss(state: State, domain: str) -> float:
        for label, metrics in state.eval_metrics.items():
            if label.split('/')[-1] == domain and 'LanguageCrossEntropy' in metrics:
                return float(metrics['LanguageCrossEntropy'].compute())
        raise ShearError(f'callbacks.dynamic_loading: no eval loss for domain {domain!r}')

    def state_dict(self) -> dict[str, Any]:
        return {'version': STATE_VERSION, 'rule': self.rule, 'history': self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get('version') != STATE_VERSION:
            raise ShearError(f'dynamic_loading state version {state.get("version")} != {STATE_VERSION}')
        if state.get('rule') != self.rule:
            raise ShearError(f'dynamic_loading: checkpoint used rule {state.get("rule")!r}, config says {self.rule!r}')
        self.history = list(state['history'])
