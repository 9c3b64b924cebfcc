"""The embedded default run: prune SmolLM2-135M on a corpus the installation carries, end to end.

Stages (each logs where its output goes; a stage whose output exists is skipped on a rerun):

1. corpus: ``code`` / ``docs`` / ``licenses`` JSON lines from the installation
   (:mod:`composer_plugins.data.embedded_corpus`);
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

from composer_plugins.errors import ShearError

log = logging.getLogger(__name__)

REPO_YAMLS = Path(__file__).resolve().parents[1] / 'yamls'
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

    stage('corpus', lambda: _corpus(paths['raw']))
    stage('smollm2', lambda: _smollm2(paths['model']))
    stage('prep', lambda: _prep(paths['raw'], paths['model'], paths['data'], cfg.train_tokens))
    refs: dict[str, float] = {}
    stage('reference losses', lambda: refs.update(_losses(paths['model'], paths['data'])))
    ref_override = 'callbacks.dynamic_loading.ref_losses={' + ', '.join(f'{d}: {v:.4f}' for d, v in refs.items()) + '}'
    stage('prune', lambda: _train(REPO_YAMLS / 'prune.yaml', [
        f'variables.model_dir={paths["model"]}', f'variables.data_dir={paths["data"]}',
        f'variables.run_dir={paths["prune"]}', f'max_duration={cfg.prune_batches}ba', ref_override,
        'save_overwrite=true', f'save_interval={cfg.prune_batches}ba',
        f'model.pruning.lagrangian_warmup={max(1, cfg.prune_batches // 5)}ba', *_intervals(cfg.prune_batches),
    ]))
    stage('export', lambda: _export(paths['prune'] / 'checkpoints' / 'latest-rank0.pt', paths['exported']))
    stage('continue', lambda: _train(REPO_YAMLS / 'continue_pretrain.yaml', [
        f'variables.model_dir={paths["exported"]}', f'variables.prune_run_dir={paths["prune"]}',
        f'variables.data_dir={paths["data"]}', f'variables.run_dir={paths["continue"]}',
        f'max_duration={cfg.continue_batches}ba', ref_override, 'save_overwrite=true',
        f'save_interval={cfg.continue_batches}ba', *_intervals(cfg.continue_batches),
    ]))
    continued = paths['continue'] / 'hf' / 'huggingface' / f'ba{cfg.continue_batches}'
    results: dict[str, dict[str, float]] = {}

    def evaluate() -> None:
        for name, model in (('source', paths['model']), ('pruned', paths['exported']), ('continued', continued)):
            results[name] = _losses(model, paths['data'])
        (out / 'results.json').write_text(json.dumps({'eval_loss': results, 'seconds': timings}, indent=2) + '\n')

    stage('evaluate', evaluate)
    stage('report', lambda: _report([paths['prune'], paths['continue']], paths['report'], out / 'results.json'))
    log.info('Per-domain eval loss (nats/token): %s', json.dumps(results))
    log.info('Report: %s', paths['report'] / 'report.md')
    return paths['report']


def _intervals(batches: int) -> list[str]:
    """Three dynamic-loading intervals per stage, each ending with the per-domain evaluation."""
    interval = max(1, batches // 3)
    return [f'train_loader.dataset.interval_batches={interval}', f'eval_interval={interval}ba']


def _corpus(raw: Path) -> None:
    from composer_plugins.data.embedded_corpus import DOMAINS, write_embedded_corpus
    if all((raw / f'{d}.jsonl').is_file() for d in DOMAINS):
        log.info('Corpus already in %s', raw)
        return
    write_embedded_corpus(raw)


def _smollm2(model_dir: Path) -> None:
    from composer_plugins.models.smollm2 import convert_smollm2
    if (model_dir / 'config.json').is_file():
        log.info('Source model already in %s', model_dir)
        return
    convert_smollm2(model_dir)


def _prep(raw: Path, model_dir: Path, data_dir: Path, train_tokens: int) -> None:
    from composer_plugins.data.embedded_corpus import DOMAINS
    from data_prep.prep import PrepConfig, prepare
    if (data_dir / 'manifest.json').is_file():
        log.info('Shards already in %s', data_dir)
        return
    prepare(PrepConfig(
        domains={d: [str(raw / f'{d}.jsonl')] for d in DOMAINS}, tokenizer=str(model_dir), seq_len=SEQ_LEN,
        train_tokens=train_tokens, eval_tokens=EVAL_ROWS * SEQ_LEN, out=data_dir, workers=1,
    ))


def _losses(model: Path, data_dir: Path) -> dict[str, float]:
    from composer_plugins.data.reference_losses import measure_reference_losses
    measured = measure_reference_losses(str(model), data_dir, max_rows=EVAL_ROWS)
    return {domain: round(result.loss, 4) for domain, result in measured.items()}


def _train(yaml: Path, overrides: list[str]) -> None:
    from composer_plugins.train_entry import main as train_main
    if train_main([str(yaml), *overrides]) != 0:
        raise ShearError(f'training with {yaml.name} failed (see the log above)')


def _export(checkpoint: Path, out: Path) -> None:
    from composer_plugins.cli.main import main as shear_main
    if shear_main(['export', str(checkpoint), '--out', str(out), '--force']) != 0:
        raise ShearError(f'export of {checkpoint} failed (see the log above)')


def _report(runs: list[Path], out: Path, results: Path) -> None:
    from composer_plugins.cli.main import COMMAND_MODULES, main as shear_main
    if 'composer_plugins.cli.report' not in COMMAND_MODULES:
        log.info('shear report is not available; results are in %s', results)
        return
    if shear_main(['report', *map(str, runs), '--out', str(out)]) != 0:
        raise ShearError('shear report failed (see the log above)')
