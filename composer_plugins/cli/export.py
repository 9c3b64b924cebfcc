"""`shear export`: turn a pruning checkpoint into a smaller, plain Hugging Face model directory."""
from __future__ import annotations

import argparse
import logging
from typing import Any

log = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``shear export`` on ``subparsers`` (protocol: :mod:`composer_plugins.cli.main`); returns its parser."""
    parser = subparsers.add_parser(
        'export',
        help='export the pruned model of a pruning checkpoint as a Hugging Face directory',
        description=(
            'Read a Composer checkpoint of a pruning run (a monolithic .pt file or a sharded FSDP2 '
            'directory), take the deterministic masks (exactly the target shape), fold their soft values '
            'into the weights and slice out the pruned structures. Writes config.json + '
            'model.safetensors + tokenizer files + pruning.json (the kept indices), loadable with '
            'AutoModelForCausalLM / AutoTokenizer.from_pretrained.'),
    )
    parser.add_argument('checkpoint', help='Composer checkpoint: .pt file, sharded directory or *.symlink')
    parser.add_argument('--out', required=True, help='output directory (must be missing or empty)')
    parser.add_argument('--force', action='store_true', help='replace a non-empty --out')
    parser.add_argument('--source-model', default=None,
                        help="name recorded as source_model in pruning.json (default: the checkpoint's "
                             'HF config _name_or_path)')
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the export; returns the exit code (errors surface as ``ShearError``)."""
    from pathlib import Path

    from composer_plugins.models.checkpoint import load_pruning_checkpoint
    from composer_plugins.models.export import export_pruned_model, pruning_record, save_exported
    from composer_plugins.output_dirs import check_out_dir
    from composer_plugins.models.mask_summary import summarize_masks

    check_out_dir(Path(args.out).expanduser().absolute(), args.force)  # before reading the checkpoint
    hf_model, pruner, tokenizer, source_name = load_pruning_checkpoint(args.checkpoint)
    masks = pruner.l0_masks.deterministic()
    log.info('Deterministic masks:\n%s', summarize_masks(masks, pruner.source, pruner.target))
    exported = export_pruned_model(hf_model, masks, pruner.source, pruner.target)
    record = pruning_record(masks, pruner.source, pruner.target, args.source_model or source_name)
    save_exported(exported, tokenizer, record, args.out, force=args.force)
    return 0
