"""``shear demo``: the README's first command, the embedded default run.

Today it builds byte-level MDS shards from the installed Python's standard library
and trains the tiny Llama of ``yamls/tiny.yaml`` on them for a few dozen steps.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

REPO_YAMLS = Path(__file__).resolve().parents[2] / 'yamls'


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser('demo', help='run the embedded default job on CPU (a few minutes)')
    parser.add_argument('--out', default='runs/demo', help='run folder (data, checkpoints); default runs/demo')
    parser.add_argument('--yaml', default=str(REPO_YAMLS / 'tiny.yaml'), help='run config (default yamls/tiny.yaml)')
    parser.add_argument('overrides', nargs='*', help='key=value overrides for the run config')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from composer_plugins.data.python_corpus import build_python_corpus_shards
    from composer_plugins.train_entry import main as train_main

    out = Path(args.out).resolve()
    start = time.monotonic()
    data_dir = build_python_corpus_shards(out / 'data', seq_len=128, train_rows=2000, eval_rows=200)
    log.info('Data: %s', data_dir)
    code = train_main([
        args.yaml, f'variables.data_dir={data_dir}', f'variables.run_dir={out}',
        'save_overwrite=true',  # a rerun of the demo starts over in the same folder
        *args.overrides,
    ])
    if code == 0:
        log.info('Demo finished in %.0f s; checkpoints in %s', time.monotonic() - start, out / 'checkpoints')
    return code
