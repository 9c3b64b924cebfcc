"""Entry point of the `shear` console command.

Each sub-command lives in its own module of this package and exposes
``add_parser(subparsers)``, which registers an ``argparse`` parser whose default
``func`` runs the command and returns an exit code. Heavy imports (torch, Composer)
happen inside the commands, so ``shear --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Sub-command modules, in the order `shear --help` lists them.
COMMAND_MODULES = (
    'composer_plugins.cli.train',
    'composer_plugins.cli.smollm2',
    'composer_plugins.cli.demo',
    'composer_plugins.cli.export',
    'composer_plugins.cli.prune_oneshot',
    'composer_plugins.cli.prep',
    'composer_plugins.cli.ref_loss',
    'composer_plugins.cli.report',
    'composer_plugins.cli.eval',
    'composer_plugins.cli.plan',
    'composer_plugins.cli.wandb_dashboard',
)

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='shear',
        description='Sheared-LLaMA recipe: prune, export and continue pre-training LLaMA-family models.',
    )
    parser.add_argument('--log-level', default='INFO', help='Python logging level (default: INFO)')
    subparsers = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format='%(asctime)s %(levelname)s %(name)s: %(message)s',
    )
    from composer_plugins.console import quiet_third_party
    from composer_plugins.errors import ShearError
    quiet_third_party()
    try:
        return int(args.func(args) or 0)
    except ShearError as err:
        log.error('%s', err)
        return 2


if __name__ == '__main__':
    sys.exit(main())
