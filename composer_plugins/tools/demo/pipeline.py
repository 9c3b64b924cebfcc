"""The embedded default run: prune SmolLM2-135M on a corpus the installation carries, end to end.

Stages (each logs where its output goes; a stage whose output exists is skipped on a rerun):

1. corpus: ``code`` / ``docs`` / ``licenses`` JSON lines from the installation
   (:mod:`composer_plugins.tools.demo.embedded_corpus`);
2. ``shear smollm2``: the source model as a Hugging Face folder;
3. ``shear prep``: per-domain MDS shards with the SmolLM2 tokenizer;
4. reference losses: the source model's own per-domain eval loss (the target of dynamic loading);
5. prune (``yamls/prune.yaml``), 6. ``shear export``, 7. continue (``yamls/continue_pretrain.yaml``);
8. per-domain eval loss of the source, pruned and continued models (``results.json``);
9. ``shear report`` over both runs.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from composer_plugins.bundled import bundled_yaml
from composer_plugins.tools.demo import stages
from composer_plugins.tools.demo.embedded_corpus import DOMAINS

log = logging.getLogger(__name__)

SEQ_LEN = 256
EVAL_ROWS = 8


@dataclass
class DemoConfig:
    """Sizes of the demo; the defaults fit in a few minutes on 2 CPU cores."""
    out: Path
    prune_batches: int = 30
    continue_batches: int = 30
    train_tokens: int = 160 * SEQ_LEN
    source: Path | None = None  # an existing SmolLM2 HF folder instead of converting one


def run_demo(cfg: DemoConfig) -> Path:
    """Run every stage; returns the report folder."""
    out = cfg.out.resolve()
    paths = {
        'raw': out / 'corpus', 'model': cfg.source or out / 'models' / 'smollm2-135m', 'data': out / 'data',
        'prune': out / 'prune', 'exported': out / 'prune' / 'exported', 'continue': out / 'continue',
        'report': out / 'report',
    }
    timings: dict[str, float] = {}

    def stage(name: str, fn: Callable[[], object]) -> None:
        start = time.monotonic()
        log.info('== stage %s', name)
        fn()
        timings[name] = round(time.monotonic() - start, 1)
        log.info('== stage %s done in %.0f s', name, timings[name])

    stage('corpus', lambda: stages.build_corpus(paths['raw']))
    stage('smollm2', lambda: stages.build_smollm2(paths['model']))
    stage('prep', lambda: stages.prep_shards(
        {d: [paths['raw'] / f'{d}.jsonl'] for d in DOMAINS}, paths['model'], paths['data'], SEQ_LEN,
        cfg.train_tokens, EVAL_ROWS * SEQ_LEN))
    refs: dict[str, float] = {}
    stage('reference losses', lambda: refs.update(stages.eval_losses(paths['model'], paths['data'], EVAL_ROWS)))
    ref_override = stages.ref_losses_override(refs)
    stage('prune', lambda: stages.train(bundled_yaml('prune.yaml'), [
        f'variables.model_dir={paths["model"]}', f'variables.data_dir={paths["data"]}',
        f'variables.run_dir={paths["prune"]}', f'max_duration={cfg.prune_batches}ba', ref_override,
        'save_overwrite=true', f'save_interval={cfg.prune_batches}ba',
        *stages.settle_overrides(cfg.prune_batches), *stages.interval_overrides(cfg.prune_batches),
    ]))
    stage('export', lambda: stages.export(paths['prune'] / 'checkpoints' / 'latest-rank0.pt', paths['exported']))
    stage('continue', lambda: stages.train(bundled_yaml('continue_pretrain.yaml'), [
        f'variables.model_dir={paths["exported"]}', f'variables.prune_run_dir={paths["prune"]}',
        f'variables.data_dir={paths["data"]}', f'variables.run_dir={paths["continue"]}',
        f'max_duration={cfg.continue_batches}ba', ref_override, 'save_overwrite=true',
        f'save_interval={cfg.continue_batches}ba', *stages.interval_overrides(cfg.continue_batches),
    ]))
    continued = paths['continue'] / 'hf' / 'huggingface' / f'ba{cfg.continue_batches}'
    results: dict[str, dict[str, float]] = {}

    def evaluate() -> None:
        for name, model in (('source', paths['model']), ('pruned', paths['exported']), ('continued', continued)):
            results[name] = stages.eval_losses(model, paths['data'], EVAL_ROWS)
        (out / 'results.json').write_text(json.dumps({'eval_loss': results, 'seconds': timings}, indent=2) + '\n')

    stage('evaluate', evaluate)
    stage('report', lambda: stages.report([paths['prune'], paths['continue']], paths['report']))
    log.info('Per-domain eval loss (nats/token): %s', json.dumps(results))
    log.info('Report: %s', paths['report'] / 'report.md')
    return paths['report']

