"""Run lm-evaluation-harness offline on a Hugging Face model directory (``shear eval``).

The harness is the optional extra ``eval`` (``pip install -e .[eval]``). Everything
runs without a network: the hub and datasets libraries are put in offline mode, the
generated tasks read local jsonl files, and the model and tokenizer load from a local
directory. Tasks that need a hub dataset only work where that dataset is cached.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from composer_plugins.errors import ShearError

log = logging.getLogger(__name__)

OFFLINE_ENV = {'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1'}
SUMMARY_METRICS = ('bits_per_byte', 'byte_perplexity', 'word_perplexity', 'acc', 'acc_norm')


@dataclass
class HarnessConfig:
    """What ``shear eval`` runs.

    Attributes:
        model_dir: An HF model directory with its tokenizer (e.g. ``shear export`` output).
        tasks: lm-eval task or group names.
        include_paths: Folders with task YAMLs (the generated ones and the user's).
        batch_size: lm-eval batch size (an int, or ``auto``).
        device: ``cpu``, ``cuda``, ``cuda:0``...
        dtype: Model dtype (``float32``, ``bfloat16``, ``auto``).
        limit: At most this many documents per task (``None``: all).
        num_fewshot: Few-shot examples for tasks that use them.
        max_length: Context length of the rolling windows (default: the model's).
    """
    model_dir: Path
    tasks: list[str]
    include_paths: list[Path] = field(default_factory=list)
    batch_size: str = '1'
    device: str = 'cpu'
    dtype: str = 'float32'
    limit: Optional[int] = None
    num_fewshot: Optional[int] = None
    max_length: Optional[int] = None


def check_model_dir(model_dir: Path) -> None:
    """Raises ShearError unless ``model_dir`` holds an HF config."""
    if not model_dir.is_dir():
        raise ShearError(f'{model_dir}: no such model directory')
    if not (model_dir / 'config.json').is_file():
        raise ShearError(f'{model_dir}: not a Hugging Face model directory (no config.json)')


def import_harness() -> Any:
    """``lm_eval``, or one clear error naming the extra to install."""
    try:
        import lm_eval
    except ImportError as err:
        raise ShearError("shear eval needs lm-evaluation-harness: pip install -e '.[eval]'") from err
    return lm_eval


def run_harness(cfg: HarnessConfig) -> dict[str, Any]:
    """Evaluate the model on the tasks; returns lm-eval's results dict (``results``, ``configs``...).

    Raises:
        ShearError: Missing model directory or harness, an unknown task name.
    """
    check_model_dir(cfg.model_dir)
    os.environ.update(OFFLINE_ENV)
    lm_eval = import_harness()
    from lm_eval.models.huggingface import HFLM

    missing = [p for p in cfg.include_paths if not p.is_dir()]
    if missing:
        raise ShearError(f'--include-path {missing[0]}: no such directory')
    manager = task_index(cfg.include_paths, cfg.tasks)
    unknown = [t for t in cfg.tasks if t not in manager.all_tasks]
    if unknown:
        raise ShearError(f'--tasks: unknown task(s) {unknown}; pass the folder of their YAMLs with --include-path')
    model_kwargs: dict[str, Any] = dict(pretrained=str(cfg.model_dir), device=cfg.device, dtype=cfg.dtype,
                                        batch_size=cfg.batch_size)
    if cfg.max_length is not None:
        model_kwargs['max_length'] = cfg.max_length
    model = HFLM(**model_kwargs)
    results = lm_eval.simple_evaluate(
        model=model, tasks=list(cfg.tasks), task_manager=manager, limit=cfg.limit,
        num_fewshot=cfg.num_fewshot, log_samples=False, bootstrap_iters=0)
    if results is None:  # only on non-zero ranks of a distributed run
        return {}
    return results


def task_index(include_paths: Sequence[Path], tasks: Sequence[str]) -> Any:
    """lm-eval's task index over ``include_paths``, and over its built-in tasks only where it needs them.

    Indexing the harness's ~15,000 built-in task YAMLs takes about 9 s on 2 cores; the generated domain
    tasks and most of a user's own need none of them. So the folders are indexed alone first, and the
    built-ins are added only when a requested name is not a plain task there (a group of the folders'
    may name built-in tasks).
    """
    from lm_eval.tasks import TaskManager

    paths = [str(p) for p in include_paths]
    if paths:
        local = TaskManager(include_path=paths, include_defaults=False)
        if all(task in local.all_subtasks for task in tasks):
            return local
    return TaskManager(include_path=paths or None)


def summary_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per task: its name and the known metrics it reports (``metric,filter`` keys)."""
    rows = []
    for task, metrics in sorted(results.get('results', {}).items()):
        row: dict[str, Any] = {'task': task}
        for key, value in metrics.items():
            metric = key.split(',')[0]
            if metric in SUMMARY_METRICS and isinstance(value, (int, float)):
                row[metric] = float(value)
        rows.append(row)
    return rows


def summary_markdown(rows: Sequence[dict[str, Any]], model_dir: Path) -> str:
    """A markdown table of :func:`summary_rows`."""
    metrics = [m for m in SUMMARY_METRICS if any(m in row for row in rows)]
    lines = [f'# lm-eval results: `{model_dir}`', '', '| task | ' + ' | '.join(metrics) + ' |',
             '|---|' + '---:|' * len(metrics)]
    for row in rows:
        cells = [f'{row[m]:.4f}' if m in row else '' for m in metrics]
        lines.append(f'| {row["task"]} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def write_results(results: dict[str, Any], out_dir: Path, model_dir: Path) -> Path:
    """``OUT/results.json`` (lm-eval's dict) and ``OUT/summary.md``; returns the summary path."""
    from lm_eval.utils import handle_non_serializable

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / 'results.json').write_text(
        json.dumps(results, indent=2, default=handle_non_serializable) + '\n', encoding='utf-8')
    summary = out_dir / 'summary.md'
    summary.write_text(summary_markdown(summary_rows(results), model_dir), encoding='utf-8')
    return summary
