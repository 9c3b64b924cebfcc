"""`shear train YAML [key=value ...]`: a training run from any folder (what ``composer train.py`` runs)."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``shear train`` on ``subparsers`` (protocol: :mod:`composer_plugins.cli.main`); returns its parser."""
    parser = subparsers.add_parser(
        'train',
        help='train from a run YAML (a path, or a bundled one by name: prune.yaml)',
        description=(
            'Validate YAML plus key=value overrides and train, as `composer train.py YAML` does from the checkout. '
            'YAML is a file, or the name of a bundled run YAML (prune.yaml, continue_pretrain.yaml, '
            'presets/llama2_7b_to_2.7b.yaml ...). Several processes: '
            '`composer -n N -m composer_plugins.train_entry YAML [key=value ...]`.'),
    )
    parser.add_argument('yaml', metavar='YAML', help='run YAML: a path or a bundled name')
    parser.add_argument('overrides', nargs=argparse.REMAINDER, metavar='key=value', help='dotted overrides')
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from composer_plugins.train_entry import main

    return main([args.yaml, *args.overrides])
