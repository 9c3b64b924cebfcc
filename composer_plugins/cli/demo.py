"""``shear demo``: the README's first command, the embedded default run.

By default: prune SmolLM2-135M to about half its non-embedding parameters on a 3-domain corpus
assembled from the installation, export it, continue pre-training it, evaluate the source,
pruned and continued models per domain and write a report
(:mod:`composer_plugins.tools.demo.pipeline`). ``--tiny`` runs the seconds-long smoke test instead:
a tiny Llama trained on byte-level Python source (``yamls/tiny.yaml``).
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser('demo', help='run the embedded default job on CPU (a few minutes)')
    parser.add_argument('--out', default='runs/demo', help='run folder; default runs/demo')
    parser.add_argument('--tiny', action='store_true', help='the smoke test: a tiny Llama, seconds')
    parser.add_argument('--source', help='an existing SmolLM2-135M HF folder (default: convert one)')
    parser.add_argument('--prune-batches', type=int, default=30)
    parser.add_argument('--continue-batches', type=int, default=30)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.tiny:
        return _run_tiny(Path(args.out))
    from composer_plugins.tools.demo.pipeline import DemoConfig, run_demo

    start = time.monotonic()
    report = run_demo(DemoConfig(
        out=Path(args.out), prune_batches=args.prune_batches, continue_batches=args.continue_batches,
        source=Path(args.source) if args.source else None,
    ))
    log.info('Demo finished in %.0f s; report in %s', time.monotonic() - start, report)
    return 0


def _run_tiny(out: Path) -> int:
    from composer_plugins.bundled import bundled_yaml
    from composer_plugins.tools.demo.python_corpus import build_python_corpus_shards
    from composer_plugins.train_entry import main as train_main

    out = out.resolve()
    start = time.monotonic()
    data_dir = build_python_corpus_shards(out / 'data', seq_len=128, train_rows=2000, eval_rows=200)
    code = train_main([
        str(bundled_yaml('tiny.yaml')), f'variables.data_dir={data_dir}', f'variables.run_dir={out}',
        'save_overwrite=true',  # a rerun of the demo starts over in the same folder
    ])
    if code == 0:
        log.info('Tiny demo finished in %.0f s; checkpoints in %s', time.monotonic() - start, out / 'checkpoints')
    return code
