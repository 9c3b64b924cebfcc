"""Reference losses predicted by a scaling law, fitted inside a run (Sheared-LLaMA §2.2).

``callbacks.dynamic_loading.ref_losses: {scaling_law: CSV, target_params: N}`` asks the callback to
fit, per domain ``i``, ``L_i(N) = E_i + A_i / (N / 1e9)^alpha_i`` to the CSV's losses of one model
family (:func:`~composer_plugins.data.reference_losses.fit_reference_losses`, the fit that
``shear ref-loss fit CSV --target-params N`` prints) and to use ``ref_i = L_i(N_target)``.

``N_target`` defaults to the run's own target size: the total parameter count
(:func:`~composer_plugins.pruning.shapes.count_params`, embeddings and LM head included, as the
paper's 1.3B / 2.7B and LLaMA2's 7B / 13B / 70B are counted) of the ``model.pruning.target`` shape,
or of the model itself for a run without pruner (continued pre-training).
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from composer_plugins.data.reference_losses import ScalingFit, fit_reference_losses
from composer_plugins.errors import ShearError
from composer_plugins.pruning.shapes import ModelShape, count_params

log = logging.getLogger(__name__)

LAW = 'L(N) = E + A / (N / 1e9)^alpha'
RECORD_NAME = 'ref_losses.json'
"""The record's file name next to ``weights_file`` when ``record_file`` is not set."""
METRIC_PREFIX = 'data/ref_loss'
FIT_PREFIX = 'data/ref_loss_fit'


@dataclass
class FittedReferences:
    """The per-domain fits of a sizes CSV and their predictions at the target size.

    Attributes:
        csv: The sizes CSV.
        target_params: ``N_target``, parameters.
        target_from: Where ``N_target`` came from: ``target_params`` (the YAML),
            ``model.pruning.target`` or ``model`` (the model's own size).
        fits: Per run domain (run order), the fitted ``E, A, alpha``.
        references: Per run domain, ``ref = E + A / (N_target / 1e9)^alpha``.
    """
    csv: str
    target_params: float
    target_from: str
    fits: dict[str, ScalingFit]
    references: dict[str, float]

    def record(self) -> dict[str, Any]:
        """The JSON record: the law, the source, each domain's fit and the references."""
        return {
            'law': LAW,
            'csv': self.csv,
            'target_params': self.target_params,
            'target_from': self.target_from,
            'fits': {d: {'E': f.E, 'A': f.A, 'alpha': f.alpha, 'rmse': f.rmse} for d, f in self.fits.items()},
            'ref_losses': dict(self.references),
        }

    def metrics(self) -> dict[str, float]:
        """``data/ref_loss/<domain>``: the reference of each domain."""
        return {f'{METRIC_PREFIX}/{d}': v for d, v in self.references.items()}

    def hyperparameters(self) -> dict[str, Any]:
        """The references, ``data/ref_loss_fit/<domain>/{E,A,alpha,rmse}`` and the target size."""
        out: dict[str, Any] = {**self.metrics(), f'{METRIC_PREFIX}_target_params': self.target_params,
                               f'{METRIC_PREFIX}_csv': self.csv}
        for domain, fit in self.fits.items():
            out.update({f'{FIT_PREFIX}/{domain}/{k}': getattr(fit, k) for k in ('E', 'A', 'alpha', 'rmse')})
        return out


def model_target_params(model: Any) -> tuple[float, str]:
    """The run's target size and where it came from (duck-typed: no torch import, no weights read).

    A :class:`~composer_plugins.models.causal_lm.ShearCausalLM` with a pruner: ``count_params`` of the
    pruner's target shape (``model.pruning.target``); otherwise ``count_params`` of the Hugging Face
    config's shape (``model``).

    Raises:
        ShearError: neither a pruner nor a Hugging Face config to read a shape from.
    """
    pruner = getattr(model, 'pruner', None)
    if pruner is not None:
        return float(count_params(pruner.target)), 'model.pruning.target'
    config = getattr(getattr(model, 'model', None), 'config', None)
    if config is None:
        raise ShearError(f'{type(model).__name__}: no Hugging Face config to count the parameters of; '
                         'set callbacks.dynamic_loading.ref_losses.target_params')
    return float(count_params(ModelShape.from_hf_config(config))), 'model'


def fit_references(csv_path: str | Path, domains: Sequence[str], target_params: float, target_from: str,
                   key: str = 'ref_losses') -> FittedReferences:
    """Fit the CSV's columns of ``domains`` and predict each at ``target_params`` (§2.2).

    Args:
        csv_path: The sizes CSV.
        domains: The run's domains (each needs a column).
        target_params: ``N_target``.
        target_from: Recorded as :attr:`FittedReferences.target_from`.
        key: The config key that errors name (``callbacks.dynamic_loading.ref_losses``).

    Raises:
        ShearError: naming ``key`` and the file: a bad CSV, a missing domain, fewer than 3
            sizes, a fit that fails or gives a non-finite or non-positive reference.
    """
    where = f'{key}.scaling_law'
    path = str(Path(csv_path).expanduser())
    try:
        fits = fit_reference_losses(path, domains)
    except ShearError as err:
        message = str(err)
        raise ShearError(f'{where}: {message}' if message.startswith(path) else f'{where}: {path}: {message}') from err
    references = {d: float(fit.predict(target_params)) for d, fit in fits.items()}
    bad = {d: v for d, v in references.items() if not (math.isfinite(v) and v > 0)}
    if bad:
        raise ShearError(f'{where}: {path}: the fit predicts non-finite or non-positive reference losses {bad} '
                         f'at N = {target_params:.6g}')
    return FittedReferences(csv=path, target_params=float(target_params), target_from=target_from,
                            fits=fits, references=references)


def log_fit(refs: FittedReferences) -> None:
    """One line per domain: ``E, A, alpha``, the rmse and the reference (python logging)."""
    log.info('Reference losses from %s fitted to %s, at N = %.6g (%s):', LAW, refs.csv, refs.target_params,
             refs.target_from)
    for domain, fit in refs.fits.items():
        log.info('  %s: E=%.4f A=%.4f alpha=%.4f (rmse %.2e) -> ref %.4f', domain, fit.E, fit.A, fit.alpha,
                 fit.rmse, refs.references[domain])


def record_path(record_file: Optional[str], weights_file: Optional[str]) -> Optional[Path]:
    """``record_file``, else :data:`RECORD_NAME` next to ``weights_file``, else None (only logged)."""
    if record_file is not None:
        return Path(record_file).expanduser()
    if weights_file is not None:
        return Path(weights_file).expanduser().with_name(RECORD_NAME)
    return None


def write_record(path: str | Path, refs: FittedReferences) -> Path:
    """Write :meth:`FittedReferences.record` as JSON, atomically (parents created); returns the path."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f'.{path.name}.tmp-{os.getpid()}')
        staging.write_text(json.dumps(refs.record(), indent=2) + '\n', encoding='utf-8')
        staging.replace(path)
    except OSError as err:
        raise ShearError(f'{path}: cannot write the reference losses: {err}') from err
    log.info('Wrote the reference losses and their fit to %s', path)
    return path
