"""Reference losses per domain for dynamic batch loading (Sheared-LLaMA §2.2).

Dynamic batch loading needs a reference loss ``ℓ_ref,i`` per domain ``i``, the loss
the target-size model should reach: the loss of an existing model, or a prediction
from a scaling law fitted to the losses of one model family at several sizes. This
module provides:

* :func:`measure_reference_losses`: the mean next-token cross entropy of a Hugging
  Face model on each domain's eval rows,
  ``ℓ_i = (1 / T_i) Σ_rows Σ_{t=1}^{L-1} −log p(x_{t+1} | x_{≤t})`` with ``T_i`` the
  number of predicted tokens;
* :func:`fit_reference_losses`: per domain the fit of the scaling law
  ``L(N) = E + A / N^α`` (§2.2) and its prediction at the target size.

Both results are written by :func:`write_ref_losses_yaml` as a ``ref_losses`` mapping
ready to paste under ``callbacks.dynamic_loading``. The sizes CSV is read by
:mod:`composer_plugins.data.sizes_csv` (pure Python, also at config load); a run that names it
(``ref_losses: {scaling_law: CSV}``) fits it at fit start with :mod:`composer_plugins.data.scaling_law_refs`.
"""
from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from composer_plugins.config.model_names import TINY_MODEL_PREFIX, looks_like_path
from composer_plugins.data.sizes_csv import MIN_SIZES, PARAMS_COLUMN, parse_param_count, read_sizes_table
from composer_plugins.errors import ShearError

log = logging.getLogger(__name__)

PARAM_SCALE = 1e9  # the law is fitted in billions of parameters for a well-conditioned problem
YAML_KEY = 'ref_losses'
DECIMALS = 4

__all__ = [  # MIN_SIZES, PARAMS_COLUMN and parse_param_count live in sizes_csv, re-exported for the CLI
    'DECIMALS', 'MIN_SIZES', 'PARAMS_COLUMN', 'PARAM_SCALE', 'YAML_KEY', 'DomainLoss', 'ScalingFit', 'SizeLosses',
    'fit_reference_losses', 'fit_scaling_law', 'load_reference_model', 'mean_token_loss', 'measure_reference_losses',
    'parse_param_count', 'read_sizes_csv', 'read_token_rows', 'ref_losses_yaml', 'resolve_domains', 'scaling_law',
    'split_index', 'write_ref_losses_yaml',
]


# --------------------------------------------------------------------------- parsing


@dataclass
class SizeLosses:
    """The losses of one model family at several sizes (a ``sizes_losses.csv``).

    Attributes:
        params: Parameter count of each size, shape ``(S,)``.
        losses: Per domain, the loss of each size, shape ``(S,)``, in column order.
    """
    params: np.ndarray
    losses: dict[str, np.ndarray]


def read_sizes_csv(path: str | Path) -> SizeLosses:
    """Read ``params,<domain1>,<domain2>,...`` with one row per model size
    (:func:`~composer_plugins.data.sizes_csv.read_sizes_table`, as numpy arrays).

    Raises:
        ShearError: Missing file, no ``params`` column or domain column, a non-numeric or
            missing value (named by line and column), fewer than :data:`MIN_SIZES` rows.
    """
    table = read_sizes_table(path)
    return SizeLosses(params=np.asarray(table.params, dtype=np.float64),
                      losses={d: np.asarray(v, dtype=np.float64) for d, v in table.losses.items()})


# --------------------------------------------------------------------------- scaling-law fit


@dataclass
class ScalingFit:
    """``L(N) = E + A / (N / 1e9)^α`` (§2.2 scaling law, with N counted in billions).

    Attributes:
        domain: The domain (CSV column).
        E: Irreducible loss.
        A: Scale of the reducible term, at N = 1e9 parameters.
        alpha: Exponent.
        rmse: Root mean squared residual of the fit over the given sizes.
    """
    domain: str
    E: float
    A: float
    alpha: float
    rmse: float

    def predict(self, params: float | np.ndarray) -> float | np.ndarray:
        """The fitted loss at ``params`` parameters (§2.2 scaling law)."""
        return scaling_law(np.asarray(params, dtype=np.float64) / PARAM_SCALE, self.E, self.A, self.alpha)


def scaling_law(x: np.ndarray, E: float, A: float, alpha: float) -> np.ndarray:
    """``E + A / x^α`` (§2.2), ``x`` the parameter count in billions."""
    return E + A * np.power(x, -alpha)


def _initial_guess(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Best (E, A, α) over a grid of α, with E and A by linear least squares at each α."""
    best: Optional[tuple[float, float, float, float]] = None
    for alpha in np.geomspace(0.01, 3.0, 80):
        design = np.stack([np.ones_like(x), np.power(x, -alpha)], axis=1)
        (E, A), *_ = np.linalg.lstsq(design, y, rcond=None)
        if A <= 0 or E < 0:
            continue
        sse = float(np.sum((design @ np.array([E, A]) - y) ** 2))
        if best is None or sse < best[0]:
            best = (sse, float(E), float(A), float(alpha))
    if best is None:  # flat or rising losses: start from a weak decay under the smallest loss
        return max(float(y.min()) * 0.9, 0.0), max(float(np.ptp(y)), 1e-3), 0.3
    return best[1], best[2], best[3]


def fit_scaling_law(params: np.ndarray, losses: np.ndarray, domain: str = '') -> ScalingFit:
    """Fit ``L(N) = E + A / (N / 1e9)^α`` with ``scipy.optimize.curve_fit``.

    Bounds keep ``E ≥ 0``, ``A > 0`` and ``0 < α ≤ 10``; the start is the best point of
    a grid over α with E and A solved linearly (:func:`_initial_guess`).

    Args:
        params: Parameter counts, shape ``(S,)``, S ≥ 3.
        losses: The domain's loss at each size.
        domain: Named in errors and logs.

    Raises:
        ShearError: Fewer than 3 sizes, or the fit does not converge.
    """
    from scipy.optimize import OptimizeWarning, curve_fit

    x = np.asarray(params, dtype=np.float64) / PARAM_SCALE
    y = np.asarray(losses, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ShearError(f'domain {domain!r}: {x.shape} parameter counts for {y.shape} losses')
    if np.unique(x).size < MIN_SIZES:
        raise ShearError(
            f'domain {domain!r}: {np.unique(x).size} distinct model size(s); '
            f'fitting E + A / N^alpha needs at least {MIN_SIZES}')
    lower, upper = np.array([0.0, 1e-12, 1e-6]), np.array([np.inf, np.inf, 10.0])
    p0 = np.clip(np.array(_initial_guess(x, y)), lower + 1e-9, np.minimum(upper, 1e6) - 1e-9)
    try:
        with warnings.catch_warnings():  # exactly 3 sizes for 3 parameters: no covariance, by construction
            warnings.simplefilter('ignore', OptimizeWarning)
            popt, _ = curve_fit(
                scaling_law, x, y, p0=p0, bounds=(lower, upper), method='trf',
                xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=20000,
            )
    except (RuntimeError, ValueError) as err:
        raise ShearError(f'domain {domain!r}: the scaling-law fit failed: {err}') from err
    E, A, alpha = (float(v) for v in popt)
    with np.errstate(over='ignore', invalid='ignore'):  # an overflow is reported below, by name
        rmse = float(np.sqrt(np.mean((scaling_law(x, E, A, alpha) - y) ** 2)))
    if not all(math.isfinite(v) for v in (E, A, alpha, rmse)):
        raise ShearError(f'domain {domain!r}: the scaling-law fit is not finite: E={E:.6g} A={A:.6g} '
                         f'alpha={alpha:.6g} rmse={rmse:.6g}')
    log.info('domain %s: E=%.4f A=%.4f alpha=%.4f (rmse %.2e)', domain, E, A, alpha, rmse)
    return ScalingFit(domain=domain, E=E, A=A, alpha=alpha, rmse=rmse)


def fit_reference_losses(csv_path: str | Path, domains: Optional[Sequence[str]] = None) -> dict[str, ScalingFit]:
    """Per domain column of ``csv_path``, the fitted scaling law (scaling-law reference of §2.2).

    Args:
        csv_path: A sizes CSV (:mod:`composer_plugins.data.sizes_csv`).
        domains: Fit only these columns, in this order (default: every column, in file order).

    Raises:
        ShearError: A bad CSV, a domain without column, or a fit that fails.
    """
    table = read_sizes_csv(csv_path)
    chosen = list(table.losses) if domains is None else list(domains)
    missing = [d for d in chosen if d not in table.losses]
    if missing:
        raise ShearError(f'{Path(csv_path).expanduser()}: no column for domain(s) {missing}; '
                         f'its domain columns are {list(table.losses)}')
    return {domain: fit_scaling_law(table.params, table.losses[domain], domain) for domain in chosen}


# --------------------------------------------------------------------------- measuring


@dataclass
class DomainLoss:
    """The measured loss of one domain.

    Attributes:
        loss: Mean next-token cross entropy, nats per predicted token.
        rows: Rows read.
        tokens: Predicted tokens (``rows × (seq_len − 1)``).
    """
    loss: float
    rows: int
    tokens: int


def split_index(data_dir: str | Path, domain: str, split: str) -> Path:
    """``DATA/<domain>/<split>/index.json``."""
    return Path(data_dir) / domain / split / 'index.json'


def resolve_domains(data_dir: str | Path, split: str, domains: Optional[Sequence[str]] = None) -> list[str]:
    """The domains to measure.

    Given ``domains``, each must have ``<split>/index.json``. Otherwise the manifest's
    domains (``DATA/manifest.json`` of ``shear prep``), else every sub-folder that has
    ``<split>/index.json``, sorted.

    Raises:
        ShearError: Missing data directory, a requested or manifest domain without MDS
            index, or no domain found.
    """
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise ShearError(f'{root}: no such data directory')
    if domains is not None:
        chosen, source = list(domains), 'requested'
    elif (root / 'manifest.json').is_file():
        from data_prep.manifest import read_manifest

        listed = read_manifest(root).get('domains')
        if not isinstance(listed, Mapping) or not listed:
            raise ShearError(f'{root / "manifest.json"}: key "domains" is not a non-empty mapping')
        chosen, source = list(listed), 'manifest'
    else:
        chosen = sorted(p.name for p in root.iterdir() if split_index(root, p.name, split).is_file())
        skipped = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in chosen)
        if skipped:
            log.warning('Skipping folder(s) of %s without %s/index.json: %s', root, split, skipped)
        if not chosen:
            raise ShearError(f'{root}: no domain folder with {split}/index.json')
        return chosen
    if not chosen:
        raise ShearError(f'{root}: no domain given')
    missing = [d for d in chosen if not split_index(root, d, split).is_file()]
    if missing:
        raise ShearError(
            f'{root}: {source} domain(s) {missing} have no {split} shards '
            f'(missing {split_index(root, missing[0], split)})')
    return chosen


def read_token_rows(split_dir: str | Path, max_rows: int) -> list[np.ndarray]:
    """Up to ``max_rows`` rows (column ``tokens``) of the MDS dataset in ``split_dir``, in order."""
    from streaming import StreamingDataset

    from composer_plugins.data.streaming_memory import released_streaming_memory

    with released_streaming_memory():  # releases only what this read created: other runs' memory is not ours
        try:
            dataset = StreamingDataset(local=str(split_dir), split=None, shuffle=False, batch_size=1)
        except Exception as err:  # streaming raises assorted errors for bad indexes
            raise ShearError(f'{split_dir}: cannot open the MDS dataset: {err}') from err
        try:
            count = min(int(dataset.num_samples), max_rows)
            return [np.asarray(dataset[i]['tokens']).astype(np.int64) for i in range(count)]
        except KeyError as err:
            raise ShearError(f'{split_dir}: MDS rows have no column {err}; expected "tokens"') from err
        finally:
            del dataset


def mean_token_loss(model: Any, rows: Sequence[np.ndarray], batch_size: int, what: str = 'rows') -> DomainLoss:
    """Mean next-token cross entropy of ``model`` over ``rows`` (fp32, eval mode, no grad).

    ``ℓ = (1 / T) Σ_rows Σ_{t=1}^{L-1} −log p(x_{t+1} | x_{≤t})``, ``T`` the number of
    predicted tokens over all rows (a token-weighted, not row-weighted, mean).

    Raises:
        ShearError: No rows, rows shorter than 2 tokens or of different lengths, or token
            ids outside the model's vocabulary (``what`` names the data).
    """
    import torch
    import torch.nn.functional as F

    if not rows:
        raise ShearError(f'{what}: no rows to measure')
    seq_len = len(rows[0])
    bad = [i for i, row in enumerate(rows) if len(row) != seq_len]
    if seq_len < 2 or bad:
        raise ShearError(f'{what}: rows must share one length of at least 2 tokens; '
                         f'row 0 has {seq_len}, rows {bad[:5]} differ')
    vocab = int(model.get_output_embeddings().weight.shape[0])
    top = max(int(row.max()) for row in rows)
    if top >= vocab or min(int(row.min()) for row in rows) < 0:
        raise ShearError(f'{what}: token id {top} outside the model vocabulary of {vocab}')
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        with torch.no_grad():
            for start in range(0, len(rows), batch_size):
                ids = torch.from_numpy(np.stack(rows[start:start + batch_size])).to(device)
                logits = model(input_ids=ids, use_cache=False).logits.float()
                nll = F.cross_entropy(
                    logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction='sum')
                total += float(nll.double())
                count += ids[:, 1:].numel()
    finally:
        model.train(was_training)
    return DomainLoss(loss=total / count, rows=len(rows), tokens=count)


def load_reference_model(source: str) -> Any:
    """The fp32 model to measure: a local HF directory, a cached hub id or a ``tiny-*`` config.

    Raises:
        ShearError: A local path that does not exist, or a model that cannot be loaded.
    """
    from composer_plugins.models.loading import load_causal_lm

    path = Path(source).expanduser()
    if not source.startswith(TINY_MODEL_PREFIX) and not path.exists() and looks_like_path(source):
        raise ShearError(f'--model {source!r}: no such model directory')
    if path.exists() and not path.is_dir():
        raise ShearError(f'--model {source!r}: not a directory (expected a Hugging Face model folder)')
    try:
        return load_causal_lm(source, pretrained=True, attn_implementation='sdpa')
    except ShearError as err:
        raise ShearError(f'--model {source!r}: {err}') from err
    except (OSError, ValueError) as err:
        raise ShearError(f'--model {source!r}: cannot load the model: {err}') from err


def measure_reference_losses(
    model_source: str,
    data_dir: str | Path,
    split: str = 'eval',
    domains: Optional[Sequence[str]] = None,
    max_rows: int = 64,
    batch_size: int = 4,
) -> dict[str, DomainLoss]:
    """Per domain, the model's mean next-token loss on the first ``max_rows`` rows (§2.2 reference losses).

    Args:
        model_source: Passed to :func:`load_reference_model`.
        data_dir: ``DATA`` with ``DATA/<domain>/<split>/`` MDS datasets.
        split: Split folder to read.
        domains: Domains to measure (default: see :func:`resolve_domains`).
        max_rows: Rows read per domain at most.
        batch_size: Rows per forward pass.
    """
    if max_rows < 1 or batch_size < 1:
        raise ShearError(f'--max-rows {max_rows} and --batch-size {batch_size} must both be at least 1')
    chosen = resolve_domains(data_dir, split, domains)
    model = load_reference_model(model_source)
    results: dict[str, DomainLoss] = {}
    for domain in chosen:
        split_dir = Path(data_dir).expanduser() / domain / split
        rows = read_token_rows(split_dir, max_rows)
        results[domain] = mean_token_loss(model, rows, batch_size, what=str(split_dir))
        log.info('domain %s: loss %.4f over %d rows (%d tokens)', domain, results[domain].loss,
                 results[domain].rows, results[domain].tokens)
    return results


# --------------------------------------------------------------------------- output


def ref_losses_yaml(losses: Mapping[str, float], comments: Sequence[str] = ()) -> str:
    """``ref_losses: {domain: loss}`` (4 decimals) preceded by ``# comment`` lines.

    The document parses to exactly ``{'ref_losses': {...}}``, so it can be pasted under
    ``callbacks.dynamic_loading`` as is.
    """
    import yaml

    lines = [f'# {line}'.rstrip() for comment in comments for line in str(comment).splitlines() or ['']]
    body = yaml.safe_dump({YAML_KEY: {str(d): round(float(v), DECIMALS) for d, v in losses.items()}},
                          sort_keys=False, default_flow_style=False)
    return '\n'.join(lines + [body.rstrip('\n')]) + '\n'


def write_ref_losses_yaml(path: str | Path, losses: Mapping[str, float], comments: Sequence[str] = ()) -> Path:
    """Write :func:`ref_losses_yaml` to ``path`` (parents created); returns the path."""
    path = Path(path).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(ref_losses_yaml(losses, comments))
    except OSError as err:
        raise ShearError(f'{path}: cannot write the reference losses: {err}') from err
    log.info('Wrote %d reference losses to %s', len(losses), path)
    return path
