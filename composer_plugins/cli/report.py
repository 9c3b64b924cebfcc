"""`shear report`: plots and a markdown summary of training run folders."""
from __future__ import annotations

import argparse
import logging
from typing import Any

log = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``shear report`` on ``subparsers`` (protocol: :mod:`composer_plugins.cli.main`); returns its parser."""
    parser = subparsers.add_parser(
        'report',
        help='plots and a markdown summary (report.md) of one or more run folders',
        description=(
            'Read RUN_DIR/metrics.jsonl (and RUN_DIR/masks/step<N>.pt, RUN_DIR/*/config.json when present) '
            'of each run and write REPORT_DIR/report.md with PNG figures: domain weights, expected vs '
            'target sparsity, kept heads / FFN channels per layer, training and per-domain eval loss, '
            'and a table of model shapes, parameter counts and last eval losses. Several runs are overlaid.'),
    )
    parser.add_argument('run_dirs', nargs='+', metavar='RUN_DIR', help='run folder holding metrics.jsonl')
    parser.add_argument('--out', required=True, metavar='REPORT_DIR', help='report folder (created)')
    parser.add_argument('--ref-losses', default=None, metavar='YAML',
                        help='ref_losses: {domain: loss} YAML (from shear ref-loss), drawn as dashed lines')
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Write the report; returns the exit code (errors surface as ``ShearError``)."""
    from composer_plugins.tools.report.markdown import write_report
    from composer_plugins.tools.report.metrics import read_ref_losses

    ref_losses = read_ref_losses(args.ref_losses) if args.ref_losses else None
    report = write_report(args.run_dirs, args.out, ref_losses=ref_losses, ref_losses_path=args.ref_losses)
    print(f'Wrote {report}')
    return 0
