"""Load what a run folder holds: ``metrics.jsonl``, mask snapshots and an exported model config.

A run folder (``variables.run_dir`` of a training YAML) holds:

* ``metrics.jsonl``: one JSON object per ``log_metrics`` call, ``{"batch": b, "<key>": value, ...}``;
* ``masks/step<N>.pt``: deterministic masks after each evaluation (pruning runs only);
* optionally an exported model folder (``exported/`` or any sub-folder) with ``config.json``.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping, Optional

from composer_plugins.errors import ShearError

log = logging.getLogger(__name__)

METRICS_FILENAME = 'metrics.jsonl'
MASKS_DIRNAME = 'masks'
_MASK_FILE = re.compile(r'^step(\d+)\.pt$')
_EVAL_LOSS = re.compile(r'^eval/(?P<domain>.+)/loss$')
_EVAL_CE = re.compile(r'^metrics/eval/(?:(?P<label>.+)/)?LanguageCrossEntropy$')
SINGLE_EVAL_LABEL = 'eval'


Series = tuple[list[int], list[float]]


@dataclass
class RunData:
    """Everything a report needs from one run folder.

    Attributes:
        path: the run folder.
        name: its name, as shown in legends and tables.
        records: the lines of ``metrics.jsonl``, in order.
        mask_step: the step of the last mask snapshot, or None.
        masks: that snapshot (mask name -> tensor), or None.
        config_path: the ``config.json`` of an exported model, or None.
    """

    path: Path
    name: str
    records: list[dict[str, Any]] = field(default_factory=list)
    mask_step: Optional[int] = None
    masks: Optional[dict[str, Any]] = None
    config_path: Optional[Path] = None

    def series(self, key: str) -> Series:
        """The ``(batches, values)`` at which ``key`` was logged (the last value per batch)."""
        return series(self.records, key)

    def keys(self) -> set[str]:
        """Every metric key logged in the run."""
        return {key for record in self.records for key in record if key != 'batch'}

    def suffixes(self, prefix: str) -> list[str]:
        """Sorted ``X`` of every key ``<prefix>X`` (e.g. the domains of ``data/weight/``)."""
        return sorted(key[len(prefix):] for key in self.keys() if key.startswith(prefix))

    def eval_losses(self) -> dict[str, Series]:
        """Per-domain eval loss series; see :func:`eval_loss_keys`."""
        return {domain: self.series(key) for domain, key in eval_loss_keys(self.keys()).items()}


def series(records: list[dict[str, Any]], key: str) -> Series:
    """The ``(batches, values)`` of ``key`` in ``records``; a batch logged twice keeps its last value."""
    by_batch: dict[int, float] = {}
    for record in records:
        if key in record:
            by_batch[int(record.get('batch', 0))] = float(record[key])
    batches = sorted(by_batch)
    return batches, [by_batch[b] for b in batches]


def eval_loss_keys(keys: set[str]) -> dict[str, str]:
    """Domain -> metric key of its eval loss, sorted by domain.

    ``eval/<domain>/loss`` (logged by ``dynamic_loading``) wins; otherwise
    ``metrics/eval/<label>/LanguageCrossEntropy``, or ``metrics/eval/LanguageCrossEntropy``
    (one eval loader) under the label ``eval``.
    """
    found: dict[str, str] = {}
    for key in sorted(keys):
        match = _EVAL_LOSS.match(key)
        if match:
            found[match['domain']] = key
    for key in sorted(keys):
        match = _EVAL_CE.match(key)
        if match:
            found.setdefault(match['label'] or SINGLE_EVAL_LABEL, key)
    return dict(sorted(found.items()))


def last_mask_file(run_dir: Path) -> Optional[tuple[int, Path]]:
    """``(step, path)`` of the highest ``masks/step<N>.pt``, or None."""
    masks_dir = run_dir / MASKS_DIRNAME
    if not masks_dir.is_dir():
        return None
    found = [(int(m[1]), p) for p in masks_dir.iterdir() if (m := _MASK_FILE.match(p.name))]
    return max(found) if found else None


_HF_CHECKPOINT = re.compile(r'ba(\d+)$')


def find_model_config(run_dir: Path) -> Optional[Path]:
    """The ``config.json`` of the run's model: ``RUN/exported/``, else the latest Hugging Face checkpoint of
    llm-foundry's ``hf_checkpointer`` (``RUN/hf/huggingface/ba<N>/``, the continued pre-training's),
    else the first ``RUN/*/config.json`` (sorted), or None."""
    preferred = run_dir / 'exported' / 'config.json'
    if preferred.is_file():
        return preferred
    hf = [(int(m[1]), p / 'config.json') for p in (run_dir / 'hf' / 'huggingface').glob('ba*')
          if (m := _HF_CHECKPOINT.match(p.name)) and (p / 'config.json').is_file()]
    if hf:
        return max(hf)[1]
    candidates = sorted(p for p in run_dir.glob('*/config.json') if p.is_file())
    return candidates[0] if candidates else None


def read_model_config(path: Path) -> SimpleNamespace:
    """A Hugging Face ``config.json`` as an attribute namespace (enough for ``ModelShape.from_hf_config``).

    Raises:
        ShearError: the file is not a JSON object.
    """
    try:
        data = json.loads(path.read_text(encoding='utf-8'))
    except (OSError, ValueError) as err:
        raise ShearError(f'{path}: cannot read model config: {err}') from err
    if not isinstance(data, dict):
        raise ShearError(f'{path}: model config must be a JSON object')
    return SimpleNamespace(**data)


def load_run(run_dir: str | Path, name: Optional[str] = None) -> RunData:
    """Load a run folder.

    Args:
        run_dir: the folder holding ``metrics.jsonl``.
        name: label for legends and tables (default: the folder name).

    Raises:
        ShearError: naming the folder, when it or its ``metrics.jsonl`` is missing or unreadable.
    """
    from composer_plugins.loggers.jsonl_metrics import read_metrics

    path = Path(run_dir).expanduser()
    metrics_path = path / METRICS_FILENAME
    if not path.is_dir():
        raise ShearError(f'{path}: run folder not found')
    if not metrics_path.is_file():
        raise ShearError(f'{path}: no {METRICS_FILENAME} in this run folder (was the jsonl logger on?)')
    try:
        records = read_metrics(metrics_path)
    except (OSError, ValueError) as err:
        raise ShearError(f'{metrics_path}: cannot read metrics: {err}') from err
    run = RunData(path=path, name=name or path.resolve().name, records=records)
    last = last_mask_file(path)
    if last is not None:
        run.mask_step, mask_path = last
        run.masks = _load_masks(mask_path)
    run.config_path = find_model_config(path)
    log.info('Loaded %s: %d metric lines, masks %s, model config %s', path, len(records),
             f'step {run.mask_step}' if last else 'none', run.config_path or 'none')
    return run


def _load_masks(path: Path) -> dict[str, Any]:
    import torch

    try:
        masks = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds
        raise ShearError(f'{path}: cannot read mask snapshot: {err}') from err
    if not isinstance(masks, Mapping):
        raise ShearError(f'{path}: mask snapshot must be a dict of tensors')
    return {str(k): v.detach().float() for k, v in masks.items()}


def read_ref_losses(path: str | Path) -> dict[str, float]:
    """The ``ref_losses: {domain: loss}`` mapping of a YAML file written by ``shear ref-loss``, as numbers.

    Raises:
        ShearError: naming the file, when it is missing or not in that format.
    """
    from composer_plugins.config.callback_args import read_ref_losses_file

    losses = read_ref_losses_file(str(path), 'ref_losses')
    try:
        return {str(domain): float(loss) for domain, loss in losses.items()}
    except (TypeError, ValueError) as err:
        raise ShearError(f'{path}: ref_losses values must be numbers: {err}') from err
