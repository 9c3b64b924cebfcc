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
    from composer_plugins.models.export_checkpoint import export_checkpoint

    export_checkpoint(args.checkpoint, args.out, force=args.force, source_model=args.source_model)
    return 0
