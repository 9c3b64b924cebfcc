"""`shear prep`: tokenize raw text per domain into MDS train/eval shards plus a manifest."""
from __future__ import annotations

import argparse
import logging
from typing import Any

log = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``shear prep`` on ``subparsers`` (protocol: :mod:`composer_plugins.cli.main`); returns its parser."""
    parser = subparsers.add_parser(
        'prep',
        help='tokenize text per domain into MDS train/eval shards (OUT/<domain>/{train,eval})',
        description=(
            'Read each domain\'s inputs (.jsonl, .jsonl.gz, .jsonl.zst files with the text under --text-key; '
            'folders of text files, one document per file; hf:NAME[:SPLIT] datasets), tokenize them, append EOS '
            'after each document and cut the stream into rows of --seq-len tokens. Per domain the first '
            '--eval-tokens worth of rows form OUT/<domain>/eval and the next --train-tokens worth form '
            'OUT/<domain>/train (MDS, column "tokens"); OUT/manifest.json records the counts. Point a run at '
            'one domain with variables.data_dir=OUT/<domain>.'),
    )
    parser.add_argument('--domain', action='append', required=True, metavar='NAME=PATH',
                        help='an input of domain NAME (letters, digits, _ and -); repeat for more inputs and domains')
    parser.add_argument('--tokenizer', required=True, help='byte-level, a local tokenizer directory or a hub id')
    parser.add_argument('--seq-len', type=int, required=True, help='tokens per row')
    parser.add_argument('--train-tokens', type=int, required=True, help='train tokens per domain')
    parser.add_argument('--eval-tokens', type=int, required=True, help='eval tokens per domain (taken first)')
    parser.add_argument('--out', required=True, help='output directory (must be missing or empty)')
    parser.add_argument('--workers', type=int, default=None,
                        help='tokenizer processes (default: min(4, CPU count))')
    parser.add_argument('--text-key', default='text', help='JSON key of the document text (default: text)')
    parser.add_argument('--force', action='store_true', help='replace a non-empty --out')
    parser.add_argument('--seed', type=int, default=0,
                        help='recorded in manifest.json; preparation is deterministic and uses no randomness')
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the preparation; returns the exit code (errors surface as ``ShearError``)."""
    from pathlib import Path

    from data_prep.prep import MANIFEST_NAME, PrepConfig, default_workers, parse_domain_args, prepare

    config = PrepConfig(
        domains=parse_domain_args(args.domain), tokenizer=args.tokenizer, seq_len=args.seq_len,
        train_tokens=args.train_tokens, eval_tokens=args.eval_tokens, out=Path(args.out),
        workers=default_workers() if args.workers is None else args.workers, text_key=args.text_key,
        force=args.force, seed=args.seed,
    )
    manifest = prepare(config)
    out = Path(args.out).expanduser().absolute()
    for name, domain in manifest.domains.items():
        train, held_out = domain.splits['train'], domain.splits['eval']
        print(f'{name}: train {train.rows} rows ({train.tokens} tokens), eval {held_out.rows} rows '
              f'({held_out.tokens} tokens) in {out / name}')
    print(f'Manifest: {out / MANIFEST_NAME}')
    return 0
