"""`shear wandb-dashboard`: a saved W&B workspace (sections L0, Loss, Data, Eval, System) for a project's runs."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_OUT = 'wandb_dashboard.json'


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``shear wandb-dashboard`` (protocol: :mod:`composer_plugins.cli.main`); returns its parser."""
    parser = subparsers.add_parser(
        'wandb-dashboard',
        help='a saved W&B workspace for a project\'s pruning runs (or its spec, offline)',
        description=(
            'Build a W&B workspace with wandb-workspaces: L0 (expected vs target sparsity per mask, Lagrange '
            'multipliers, expected parameters, kept-units heatmap, shape table), Loss (LM, Lagrangian, KD), '
            'Data (domain weights stacked, samples per domain, final weights), Eval (eval loss vs reference '
            'loss and gap per domain) and System (throughput, MFU). It is saved to W&B, unless --out is given '
            'or W&B is offline (WANDB_MODE=offline/disabled, or no API key): then the spec and the exact view '
            f'are written to --out (default {DEFAULT_OUT}; YAML for .yaml/.yml).'),
    )
    parser.add_argument('--entity', required=True, help='W&B entity (user or team)')
    parser.add_argument('--project', required=True, help='W&B project of the runs')
    parser.add_argument('--name', default='Sheared-LLaMA pruning', help='name of the saved view')
    parser.add_argument('--run-dir', default=None, metavar='RUN_DIR',
                        help='a run folder whose metrics.jsonl names the mask types and domains (exact panels '
                             'per mask and domain); default: a panel per mask type, regex panels over domains')
    parser.add_argument('--out', default=None, metavar='SPEC',
                        help='write the spec (JSON, or YAML for .yaml/.yml) instead of saving to W&B')
    parser.add_argument('--layout-png', default=None, metavar='PNG', help='also draw the layout to this PNG')
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Save the workspace, or write its spec; returns the exit code (errors surface as ``ShearError``)."""
    from composer_plugins.tools.dashboard.spec import RunNames, build_spec, read_run_keys
    from composer_plugins.tools.dashboard.workspace import save_workspace, wandb_is_offline, write_spec

    names = RunNames.from_keys(read_run_keys(Path(args.run_dir))) if args.run_dir else None
    spec = build_spec(args.entity, args.project, args.name, names)
    if args.layout_png:
        from composer_plugins.tools.dashboard.layout_png import render_layout
        print(f'Wrote {render_layout(spec, Path(args.layout_png))}')
    if args.out is None and not wandb_is_offline():
        print(f'Saved the workspace: {save_workspace(spec)}')
        return 0
    if args.out is None:
        log.info('W&B is offline (WANDB_MODE or no API key): writing the spec instead of saving it')
    out = write_spec(spec, Path(args.out or DEFAULT_OUT))
    print(f'Wrote {out} ({len(spec.sections)} sections, {len(spec.panels())} panels)')
    return 0
