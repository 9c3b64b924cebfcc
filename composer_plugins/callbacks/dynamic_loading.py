"""Dynamic batch loading: re-weight the domains from each domain's loss gap (paper Algorithm 1).

After every evaluation (one per interval, ``eval_interval`` = the loader's
``interval_batches``) it reads each domain's eval loss from the evaluator labelled with
the domain's name, applies the rule and hands the next interval's weights to the
``domain_mixture`` train dataset.

Metric keys:

* ``eval/<domain>/loss``: the domain's eval cross entropy;
* ``data/weight/<domain>``: the weight of the next interval;
* ``data/gap/<domain>``: the domain's eval loss minus its reference loss (before any clamp),
  the gap this update read;
* ``data/weight_entropy``: the entropy of those weights in nats (``ln k`` is uniform, 0 one domain);
* ``data/samples/<domain>``: samples drawn from the domain so far (every batch);
* ``data/ref_offset``: with ``ref_losses: {source_losses: ...}``, the offset ``c`` fitted on the first
  evaluation (each domain's reference is its source loss plus ``c``);
* ``data/ref_loss/<domain>``: with ``ref_losses: {scaling_law: CSV}``, the reference fitted at fit
  start, ``E + A / (N / 1e9)^alpha`` at the target size (also a hyperparameter, with each domain's
  ``data/ref_loss_fit/<domain>/{E,A,alpha,rmse}`` and ``data/ref_loss_target_params``).
"""
from __future__ import annotations

import logging
from typing import Any, Optional

import numpy as np
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

from composer_plugins.callbacks.trainer_state import domain_eval_loss, unwrapped_model
from composer_plugins.config.callback_args import DynamicLoadingConfig, ScalingLawRefs, SourceOffsetRefs
from composer_plugins.config.typed import from_dict
from composer_plugins.data.domain_weights import per_domain_values, write_domain_weights
from composer_plugins.data.mixture_loader import DomainMixtureDataset
from composer_plugins.data.scaling_law_refs import (
    FittedReferences,
    fit_references,
    log_fit,
    model_target_params,
    record_path,
    write_record,
)
from composer_plugins.data.weight_rules import RULES, weight_entropy
from composer_plugins.errors import ShearError

log = logging.getLogger(__name__)

STATE_VERSION = 2
"""2 adds ``ref_offset``; a version-1 state (no offset) is read too."""
NAME = 'dynamic_loading'


class DynamicLoading(Callback):
    """Registered as ``dynamic_loading``.

    Args:
        **kwargs: the fields of :class:`~composer_plugins.config.callback_args.DynamicLoadingConfig`
            (``rule``, ``ref_losses``, ``clamp_gap``, ``smoothing``, ``floor``, ``weights_file``),
            validated here (a bad key or value is one :class:`ConfigError` naming it); rule
            ``bounded`` is :func:`~composer_plugins.data.weight_rules.bounded_update`. With
            ``ref_losses: {scaling_law: CSV}`` the references are fitted at fit start
            (:func:`~composer_plugins.data.scaling_law_refs.fit_references`), logged, and written by
            rank 0 to ``record_file`` (default ``ref_losses.json`` next to ``weights_file``).

    Attributes:
        fitted: the scaling-law fit of this run (None with numeric ``ref_losses``, or before fit start).
        ref_offset: with ``ref_losses: {source_losses: ...}``, the offset fitted on the first evaluation
            (:class:`~composer_plugins.config.callback_args.SourceOffsetRefs`); None before it.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.config: DynamicLoadingConfig = from_dict(DynamicLoadingConfig, kwargs, f'callbacks.{NAME}')
        self.history: list[dict[str, Any]] = []
        self.fitted: Optional[FittedReferences] = None
        self.ref_offset: Optional[float] = None

    def _dataset(self, state: State) -> DomainMixtureDataset:
        dataset = getattr(state.train_dataloader, 'dataset', None)
        if not isinstance(dataset, DomainMixtureDataset):
            raise ShearError('callbacks.dynamic_loading needs train_loader.name: domain_mixture')
        return dataset

    def reference_losses(self, domains: list[str]) -> np.ndarray:
        """The reference loss of each of ``domains`` that the rule compares against (zeros without any)."""
        refs = self.config.ref_losses
        if refs is None:
            return np.zeros(len(domains))
        if isinstance(refs, ScalingLawRefs):
            if self.fitted is None:
                raise ShearError(f'callbacks.{NAME}.ref_losses: the scaling law is fitted at fit start, not yet run')
            refs = self.fitted.references
        if isinstance(refs, SourceOffsetRefs):
            source = np.array(per_domain_values(refs.source_losses, domains, f'callbacks.{NAME}.ref_losses'))
            return source + (self.ref_offset or 0.0)
        return np.array(per_domain_values(refs, domains, f'callbacks.{NAME}.ref_losses'))  # positive for bounded

    def fit_offset(self, losses: np.ndarray, domains: list[str]) -> float:
        """``c = mean_i (L_i - S_i)`` on the first evaluation's losses ``L`` (source losses ``S``)."""
        self.ref_offset = float(np.mean(losses - self.reference_losses(domains)))
        log.info('callbacks.%s.ref_losses: references are the source losses + %.4f (the mean gap of the first '
                 'evaluation)', NAME, self.ref_offset)
        return self.ref_offset

    def fit_scaling_law(self, model: Any, logger: Logger, domains: list[str]) -> FittedReferences:
        """Fit ``L(N) = E + A / N^alpha`` per domain of the CSV and predict at the target size (§2.2).

        The target is ``ref_losses.target_params``, else the size of ``model``'s pruning target (or of
        ``model`` itself without pruner), :func:`~composer_plugins.data.scaling_law_refs.model_target_params`.
        Logs the fit and the references (python logging, ``logger``'s hyperparameters and metrics) and
        writes the record on rank 0.

        Raises:
            ShearError: naming ``callbacks.dynamic_loading.ref_losses.scaling_law`` and the file.
        """
        source: ScalingLawRefs = self.config.ref_losses
        key = f'callbacks.{NAME}.ref_losses'
        target, target_from = source.target_param_count(), 'target_params'
        if target is None:
            target, target_from = model_target_params(model)
        else:
            log.info('%s.target_params: predicting at N = %.6g rather than at the run\'s own target size', key, target)
        self.fitted = fit_references(source.csv_path(), domains, target, target_from, key)
        log_fit(self.fitted)
        logger.log_hyperparameters(self.fitted.hyperparameters())
        logger.log_metrics(self.fitted.metrics())
        out = record_path(source.record_file, self.config.weights_file)
        if out is None:
            log.info('%s: not recorded in a file (set %s.record_file or callbacks.%s.weights_file)', key, key, NAME)
        elif dist.get_global_rank() == 0:
            write_record(out, self.fitted)
        return self.fitted

    def fit_start(self, state: State, logger: Logger) -> None:
        dataset = self._dataset(state)
        if isinstance(self.config.ref_losses, ScalingLawRefs):
            self.fit_scaling_law(unwrapped_model(state), logger, list(dataset.domains))
        self.reference_losses(dataset.domains)  # fail early on a mismatch
        labels = {label.split('/')[-1] for label in state.eval_metrics} if state.eval_metrics else set()
        evaluator_labels = {ev.label.split('/')[-1] for ev in state.evaluators}
        missing = [d for d in dataset.domains if d not in evaluator_labels | labels]
        if missing:
            raise ShearError(
                f'callbacks.dynamic_loading: no evaluator labelled with domain(s) {missing}; write eval_loaders: '
                '{per_domain: {}} (one per domain) or one eval_loaders entry per domain with label: <domain>',
            )

    def batch_end(self, state: State, logger: Logger) -> None:
        dataset = self._dataset(state)
        consumed = dataset.consumed_per_domain(int(state.timestamp.sample_in_epoch))
        logger.log_metrics({f'data/samples/{d}': int(n) for d, n in zip(dataset.domains, consumed)})

    def eval_after_all(self, state: State, logger: Logger) -> None:
        dataset = self._dataset(state)
        losses = np.array([self._domain_loss(state, domain) for domain in dataset.domains])
        offset_refs = isinstance(self.config.ref_losses, SourceOffsetRefs)
        if offset_refs and self.ref_offset is None:
            self.fit_offset(losses, list(dataset.domains))
        refs = self.reference_losses(dataset.domains)
        cfg = self.config
        new = RULES[self.config.rule](
            dataset.next_weights, losses, refs, clamp_gap=cfg.clamp_gap, smoothing=cfg.smoothing, floor=cfg.floor,
        )
        dataset.set_weights(new)
        step = int(state.timestamp.batch)
        self.history.append({'batch': step, 'losses': losses.tolist(), 'weights': new.tolist()})
        metrics: dict[str, float] = {'data/weight_entropy': weight_entropy(new)}
        if offset_refs:
            metrics['data/ref_offset'] = float(self.ref_offset)
        for domain, loss, ref, weight in zip(dataset.domains, losses, refs, new):
            metrics[f'eval/{domain}/loss'] = float(loss)
            metrics[f'data/weight/{domain}'] = float(weight)
            metrics[f'data/gap/{domain}'] = float(loss - ref)
        logger.log_metrics(metrics)
        if cfg.weights_file is not None and dist.get_global_rank() == 0:
            write_domain_weights(cfg.weights_file, step, dict(zip(dataset.domains, new.tolist())))
        log.info('Batch %d: domain weights %s', step, dict(zip(dataset.domains, np.round(new, 4).tolist())))

    @staticmethod
    def _domain_loss(state: State, domain: str) -> float:
        loss = domain_eval_loss(state, domain)
        if loss is not None:
            return loss
        raise ShearError(f'callbacks.dynamic_loading: no eval loss for domain {domain!r}')

    def state_dict(self) -> dict[str, Any]:
        return {'version': STATE_VERSION, 'rule': self.config.rule, 'history': self.history,
                'ref_offset': self.ref_offset}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get('version') not in (1, STATE_VERSION):
            raise ShearError(f'dynamic_loading state version {state.get("version")} != {STATE_VERSION}')
        if state.get('rule') != self.config.rule:
            raise ShearError(f'dynamic_loading: checkpoint used rule {state.get("rule")!r}, '
                             f'config says {self.config.rule!r}')
        self.history = list(state['history'])
        self.ref_offset = state.get('ref_offset')
