"""`shear prune-oneshot`: prune to a target shape from activation importance, without training."""
from __future__ import annotations

import argparse
import logging
from typing import Any

log = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``shear prune-oneshot`` on ``subparsers`` (protocol: :mod:`composer_plugins.cli.main`).

    Returns its parser.
    """
    parser = subparsers.add_parser(
        'prune-oneshot',
        help='prune to a target shape in minutes from activation importance (no training) and export',
        description=(
            'Score heads / KV groups (attention output norms), FFN channels and hidden channels (mean '
            'activation magnitudes, as in Minitron) and layers (Block Influence on the residual stream, as in '
            'ShortGPT) on calibration rows of prepared shards, keep the top-k of each to reach the target '
            'shape exactly, and export like shear export: config.json + model.safetensors + tokenizer + '
            'pruning.json (with "method": "oneshot-activation").'),
    )
    parser.add_argument('--model', required=True, help='source: HF model directory, hub id or tiny-* name')
    parser.add_argument('--data', required=True, metavar='PREP_DIR', help='output of shear prep (calibration rows)')
    parser.add_argument('--target', required=True,
                        help='a run YAML with model.pruning.target (e.g. yamls/prune.yaml) or '
                             'num_layers=24,num_attention_heads=6,num_key_value_heads=2,hidden_size=448,'
                             'intermediate_size=1280')
    parser.add_argument('--out', required=True, help='output directory (must be missing or empty)')
    parser.add_argument('--calib-rows', type=int, default=256, help='calibration rows over all domains (default 256)')
    parser.add_argument('--split', default='train', help='split to calibrate on (default: train)')
    parser.add_argument('--domains', nargs='+', default=None, help='domains to calibrate on (default: all)')
    parser.add_argument('--batch-size', type=int, default=4, help='rows per forward pass (default 4)')
    parser.add_argument('--force', action='store_true', help='replace a non-empty --out')
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Prune and export; returns the exit code (errors surface as ``ShearError``)."""
    from pathlib import Path

    from composer_plugins.tools.oneshot.prune import OneShotConfig, prune_oneshot, read_target

    out = prune_oneshot(OneShotConfig(
        model=args.model, data=Path(args.data), target=read_target(args.target), out=Path(args.out),
        calib_rows=args.calib_rows, split=args.split, domains=args.domains, batch_size=args.batch_size,
        force=args.force))
    print(f'Wrote {out}')
    return 0
