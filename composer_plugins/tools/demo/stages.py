"""The steps that whole-recipe drivers chain (``shear demo``, ``benchmarks/quality.py``), one function each.

Each step calls the same code as its command (``shear smollm2``, ``shear prep``,
``composer train.py``, ``shear export``, ``shear report``), and a step whose output
already exists is skipped, so an interrupted driver can be rerun.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Optional, Sequence

from composer_plugins.errors import ShearError

log = logging.getLogger(__name__)


def build_corpus(raw: Path, domains: Optional[Sequence[str]] = None) -> None:
    """The embedded corpus's JSON lines in ``raw``: ``domains``, by default ``code`` / ``docs`` / ``licenses``."""
    from composer_plugins.tools.demo.embedded_corpus import DOMAINS, write_embedded_corpus
    domains = DOMAINS if domains is None else domains
    if all((raw / f'{d}.jsonl').is_file() for d in domains):
        log.info('Corpus already in %s', raw)
        return
    write_embedded_corpus(raw, domains)


def build_smollm2(model_dir: Path) -> None:
    """SmolLM2-135M as an HF folder (``shear smollm2``)."""
    from composer_plugins.tools.smollm2 import convert_smollm2
    if (model_dir / 'config.json').is_file():
        log.info('Source model already in %s', model_dir)
        return
    convert_smollm2(model_dir)


def prep_shards(inputs: Mapping[str, Sequence[Path]], tokenizer: Path, out: Path, seq_len: int,
                train_tokens: int, eval_tokens: int) -> None:
    """``shear prep`` of ``{domain: [jsonl, ...]}`` with the tokenizer of a model folder."""
    from data_prep.prep import PrepConfig, prepare
    if (out / 'manifest.json').is_file():
        log.info('Shards already in %s', out)
        return
    prepare(PrepConfig(
        domains={d: [str(p) for p in paths] for d, paths in inputs.items()}, tokenizer=str(tokenizer),
        seq_len=seq_len, train_tokens=train_tokens, eval_tokens=eval_tokens, out=out, workers=1,
    ))


def eval_losses(model: Path, data_dir: Path, rows: int) -> dict[str, float]:
    """Per-domain mean token loss of ``model`` on the first ``rows`` eval rows of each domain."""
    from composer_plugins.data.reference_losses import measure_reference_losses
    measured = measure_reference_losses(str(model), data_dir, max_rows=rows)
    return {domain: round(result.loss, 4) for domain, result in measured.items()}


def ref_losses_override(losses: Mapping[str, float]) -> str:
    """The override that sets dynamic loading's reference losses."""
    return 'callbacks.dynamic_loading.ref_losses={' + ', '.join(f'{d}: {v:.4f}' for d, v in losses.items()) + '}'


def interval_overrides(batches: int) -> list[str]:
    """Three dynamic-loading intervals in a stage of ``batches``, each ending with the per-domain evaluation."""
    interval = max(1, batches // 3)
    return [f'train_loader.dataset.interval_batches={interval}', f'eval_interval={interval}ba']


def settle_overrides(batches: int) -> list[str]:
    """The pruning stage's settle phase: its last fifth, at least 2 batches, ends on the target sparsity.

    Two at least, so that the last logged forward already ran after a projection.
    """
    return [f'callbacks.mask_learning.settle={min(batches, max(2, batches // 5))}ba']


def train(yaml: Path, overrides: Sequence[str]) -> None:
    """``composer train.py YAML overrides...`` in this process (one rank), which keeps no model alive after it."""
    from composer_plugins.data.streaming_memory import released_streaming_memory
    from composer_plugins.models.state_dict_cache import release_state_dict_cache
    from composer_plugins.train_entry import main as train_main
    try:
        with released_streaming_memory():  # several runs in one process would exhaust the open-file limit
            code = train_main([str(yaml), *overrides])
    finally:
        release_state_dict_cache()  # or each run's model and optimizer state would stay in memory
    if code != 0:
        raise ShearError(f'training with {yaml.name} failed (see the log above)')


def export(checkpoint: Path, out: Path) -> None:
    """``shear export CHECKPOINT --out OUT --force``."""
    from composer_plugins.models.export_checkpoint import export_checkpoint
    export_checkpoint(checkpoint, out, force=True)


def report(runs: Sequence[Path], out: Path) -> None:
    """``shear report RUN... --out OUT``."""
    from composer_plugins.tools.report.markdown import write_report
    write_report([str(run) for run in runs], str(out))
