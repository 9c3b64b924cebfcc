"""`shear eval`: lm-evaluation-harness, offline, on an exported model and the eval shards' domains."""
from __future__ import annotations

import argparse
import logging
from typing import Any

log = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``shear eval`` on ``subparsers`` (protocol: :mod:`composer_plugins.cli.main`); returns its parser."""
    parser = subparsers.add_parser(
        'eval',
        help='run lm-eval offline on a model directory: per-domain bits per byte of the eval shards, plus your tasks',
        description=(
            'Generate one lm-eval perplexity task per domain of a prepared folder (shear_<domain>, from '
            'DATA/<domain>/eval, decoded with the manifest tokenizer and split at EOS) and run lm-evaluation-'
            "harness on MODEL_DIR with them and with any --tasks found in --include-path folders. "
            'Writes OUT/results.json (lm-eval output), OUT/summary.md and OUT/tasks/ (the generated YAMLs). '
            "Needs the extra: pip install -e '.[eval]'."),
    )
    parser.add_argument('model_dir', metavar='MODEL_DIR', help='Hugging Face model directory with its tokenizer')
    parser.add_argument('--data', default=None, metavar='PREP_DIR',
                        help='output of shear prep: one task per domain from its eval shards')
    parser.add_argument('--domains', nargs='+', default=None, help='domains of --data to use (default: all)')
    parser.add_argument('--tasks', nargs='+', default=[], help='further lm-eval task or group names')
    parser.add_argument('--include-path', nargs='+', default=[], metavar='DIR',
                        help='folders with task YAMLs for --tasks')
    parser.add_argument('--out', required=True, help='output folder (created)')
    parser.add_argument('--limit', type=int, default=None, help='at most this many documents per task')
    parser.add_argument('--max-rows', type=int, default=1_000_000, help='at most this many eval rows per domain')
    parser.add_argument('--batch-size', default='1', help="lm-eval batch size, or 'auto' (default: 1)")
    parser.add_argument('--device', default='cpu', help='cpu, cuda, cuda:0... (default: cpu)')
    parser.add_argument('--dtype', default='float32', help='model dtype: float32, bfloat16, auto (default: float32)')
    parser.add_argument('--num-fewshot', type=int, default=None, help='few-shot examples for tasks that use them')
    parser.add_argument('--max-length', type=int, default=None, help="context length (default: the model's)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Generate the domain tasks and run the harness; returns the exit code."""
    from pathlib import Path

    from composer_plugins.errors import ShearError
    from composer_plugins.tools.evaluation.domain_tasks import write_domain_tasks
    from composer_plugins.tools.evaluation.harness import (
        HarnessConfig,
        check_model_dir,
        import_harness,
        run_harness,
        write_results,
    )

    model_dir = Path(args.model_dir).expanduser().absolute()
    out = Path(args.out).expanduser().absolute()
    check_model_dir(model_dir)
    import_harness()
    if args.data is None and not args.tasks:
        raise ShearError('nothing to evaluate: pass --data PREP_DIR and/or --tasks')
    tasks, include = list(args.tasks), [Path(p).expanduser().absolute() for p in args.include_path]
    if args.data is not None:
        task_dir = out / 'tasks'
        generated = write_domain_tasks(args.data, task_dir, args.domains, max_rows=args.max_rows)
        tasks = [t.name for t in generated] + tasks
        include.insert(0, task_dir)
    log.info('lm-eval on %s: tasks %s; results go to %s', model_dir, tasks, out)
    results = run_harness(HarnessConfig(
        model_dir=model_dir, tasks=tasks, include_paths=include, batch_size=args.batch_size,
        device=args.device, dtype=args.dtype, limit=args.limit, num_fewshot=args.num_fewshot,
        max_length=args.max_length))
    if not results:
        return 0
    summary = write_results(results, out, model_dir)
    log.info('lm-eval summary:\n%s', summary.read_text())
    print(f'Wrote {summary}')
    return 0
