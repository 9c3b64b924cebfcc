"""``shear prune-oneshot``: prune to a target shape in minutes, from activation importance, with no training.

Steps: load the source model; take calibration rows from prepared shards (the first rows
of each domain's ``train`` split, domains in turn); measure the importance of every
structure (:mod:`~composer_plugins.importance.scores`); keep the top-k per structure
(:mod:`~composer_plugins.importance.select`); export with the same code and format as
``shear export`` (HF directory + ``pruning.json``, which also records the method and the
calibration data).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from composer_plugins.config.typed import from_dict
from composer_plugins.data.calibration import calibration_rows
from composer_plugins.data.reference_losses import load_reference_model
from composer_plugins.errors import ShearError
from composer_plugins.importance.scores import measure_importance
from composer_plugins.importance.select import select_masks
from composer_plugins.pruning.config import TargetShapeConfig
from composer_plugins.pruning.shapes import ModelShape, validate_target

log = logging.getLogger(__name__)

METHOD = 'oneshot-activation'


@dataclass
class OneShotConfig:
    """What ``shear prune-oneshot`` does.

    Attributes:
        model: Source: an HF directory (with its tokenizer), a cached hub id or a ``tiny-*`` name.
        data: ``shear prep`` output to take calibration rows from.
        target: The exact target shape.
        out: Output directory (the exported model).
        calib_rows: Calibration rows in all, spread evenly over the domains.
        split: Split the calibration rows come from (``train``: never the eval data).
        domains: Domains to calibrate on (default: all of the prepared folder's).
        batch_size: Rows per forward pass.
        force: Replace a non-empty ``out``.
    """
    model: str
    data: Path
    target: TargetShapeConfig
    out: Path
    calib_rows: int = 256
    split: str = 'train'
    domains: Optional[list[str]] = None
    batch_size: int = 4
    force: bool = False


def read_target(spec: str) -> TargetShapeConfig:
    """A target from ``KEY=V,KEY=V...`` or from ``model.pruning.target`` of a run YAML.

    Raises:
        ShearError: An unreadable YAML, a YAML without ``model.pruning.target``, or a bad key/value.
    """
    path = Path(spec).expanduser()
    if spec.endswith(('.yaml', '.yml')) or path.is_file():
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise ShearError(f'--target {spec}: cannot read the YAML: {err}') from err
        target = ((loaded or {}).get('model') or {}).get('pruning', {}).get('target')
        if not isinstance(target, dict):
            raise ShearError(f'--target {spec}: the YAML has no model.pruning.target mapping')
        return from_dict(TargetShapeConfig, target, f'{spec}: model.pruning.target')
    values: dict[str, Any] = {}
    for item in filter(None, spec.split(',')):
        key, sep, value = item.partition('=')
        if not sep or not value.strip().isdigit():
            raise ShearError(f'--target {spec!r}: expected KEY=INT,... (or a run YAML), got {item!r}')
        values[key.strip()] = int(value)
    return from_dict(TargetShapeConfig, values, '--target')


def _source_tokenizer(model: str) -> Any:
    """The source's tokenizer, saved next to the pruned model (byte-level for ``tiny-*`` sources)."""
    from data_prep.tokenizers import load_tokenizer

    if model.startswith('tiny-'):
        return load_tokenizer('byte-level')
    try:
        return load_tokenizer(model)
    except (OSError, ValueError) as err:
        log.warning('No tokenizer saved with the pruned model (cannot load one from %s: %s)', model, err)
        return None


def prune_oneshot(cfg: OneShotConfig) -> Path:
    """Run the one-shot pruning and export; returns the output directory.

    Raises:
        ShearError: Bad model, data or target, or a non-empty ``out`` without ``force``.
    """
    from composer_plugins.models.export import export_pruned_model, pruning_record, save_exported
    from data_prep.output_dirs import check_out_dir

    out = Path(cfg.out).expanduser().absolute()
    check_out_dir(out, cfg.force)
    model = load_reference_model(cfg.model)
    source = ModelShape.from_hf_config(model.config)
    target = cfg.target.to_shape(source)
    validate_target(source, target)
    rows = calibration_rows(Path(cfg.data), cfg.split, cfg.domains, cfg.calib_rows)
    importance = measure_importance(model, rows, cfg.batch_size)
    masks = select_masks(importance, source, target)
    exported = export_pruned_model(model, masks, source, target)
    record = pruning_record(masks, source, target, cfg.model)
    record['method'] = METHOD
    record['calibration'] = {'data': str(cfg.data), 'split': cfg.split, 'rows': len(rows),
                             'tokens': importance.tokens}
    save_exported(exported, _source_tokenizer(cfg.model), record, out, force=cfg.force)
    log.info('One-shot pruned %s to %s: %d -> %d layers, hidden %d -> %d', cfg.model, out, source.num_layers,
             target.num_layers, source.hidden_size, target.hidden_size)
    return out
