"""A pruning checkpoint to a smaller, plain Hugging Face folder: what ``shear export`` runs."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)


def export_checkpoint(checkpoint: str | Path, out: str | Path, force: bool = False,
                      source_model: Optional[str] = None) -> Path:
    """Export the deterministic-mask model of ``checkpoint`` (a ``.pt`` file, sharded folder or symlink) to ``out``.

    ``out`` must be missing or empty unless ``force``; it is checked before the checkpoint is read.
    ``source_model`` is recorded in ``pruning.json`` (default: the checkpoint's HF ``_name_or_path``).
    Returns ``out``.
    """
    from composer_plugins.models.checkpoint import load_pruning_checkpoint
    from composer_plugins.models.export import export_pruned_model, pruning_record, save_exported
    from composer_plugins.models.mask_summary import summarize_masks
    from data_prep.output_dirs import check_out_dir

    out = Path(out).expanduser().absolute()
    check_out_dir(out, force)
    hf_model, pruner, tokenizer, source_name = load_pruning_checkpoint(str(checkpoint))
    masks = pruner.l0_masks.deterministic()
    log.info('Deterministic masks:\n%s', summarize_masks(masks, pruner.source, pruner.target))
    record = pruning_record(masks, pruner.source, pruner.target, source_model or source_name)
    exported = export_pruned_model(hf_model, masks, pruner.source, pruner.target, consume_source=True)
    del hf_model
    save_exported(exported, tokenizer, record, str(out), force=force)
    return out
