"""Data loading and preparation throughput: ours vs plain mosaicml-streaming / llm-foundry.

1. Loader: iterate the same MDS shards (several domains of random token rows) with
   ``build_domain_mixture_dataloader`` (``domain_mixture``) and with a plain
   ``StreamingDataset`` (one ``Stream`` per domain, proportions = mixture weights,
   shuffle=True) in a ``DataLoader`` whose collate stacks ``tokens`` into int64.
   Same batch size, same ``num_workers``; the kinds alternate, median of ``--repeats``.
   A third, diagnostic kind uses our dataset and sampler with the plain one-tensor collate
   (``collate_lm`` also returns attention mask, labels, domain and sample ids).
2. Prep: tokenize the same JSONL (Python standard library sources, one file per line)
   into concatenated rows of ``--seq-len`` tokens with ``shear prep``
   (``data_prep.prep.prepare``) and with llm-foundry's ``convert_dataset_json``; same
   byte-level tokenizer saved to a folder; alternate, median of ``--prep-repeats``.

Prints one JSON line per measurement, a JSON summary line and markdown tables; progress
goes to the log (stderr). Everything is written under a private temp folder (TMPDIR).

    PYTHONPATH=. python benchmarks/data_loading.py [--batches 1000] [--prep-mb 32] [--skip-prep]
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import shutil
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

log = logging.getLogger('bench.data_loading')

DOMAINS = ('alpha', 'beta', 'gamma')


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


# ----------------------------------------------------------------------------- loader
def make_shards(root: Path, domains: list[str], rows: int, row_len: int, vocab: int, seed: int) -> None:
    from data_prep.mds import write_token_rows

    rng = np.random.default_rng(seed)
    for domain in domains:
        write_token_rows(root / domain / 'train', (rng.integers(0, vocab, row_len) for _ in range(rows)), vocab)


def build_ours(root: Path, domains: list[str], weights: list[float], batch: int, workers: int, batches: int,
               row_len: int) -> torch.utils.data.DataLoader:
    from streaming.base.util import clean_stale_shared_memory

    from composer_plugins.data.mixture_loader import build_domain_mixture_dataloader

    clean_stale_shared_memory()
    spec = build_domain_mixture_dataloader(
        None, batch,
        dataset={'domains': domains, 'local': str(root), 'split': 'train', 'weights': weights,
                 'interval_batches': batches, 'max_seq_len': row_len, 'seed': 17},
        num_workers=workers, prefetch_factor=2 if workers else None,
    )
    return spec.dataloader


def _ids_only(samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Like the plain collate: one int64 tensor per batch (``collate_lm`` also builds masks, labels, ids)."""
    return {'input_ids': torch.stack([s['input_ids'] for s in samples])}


def build_ours_ids(root: Path, domains: list[str], weights: list[float], batch: int, workers: int, batches: int,
                   row_len: int) -> torch.utils.data.DataLoader:
    """Diagnostic: our dataset and sampler with the plain benchmark's one-tensor collate."""
    loader = build_ours(root, domains, weights, batch, workers, batches, row_len)
    loader.collate_fn = _ids_only
    return loader


def _stack_tokens(samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    tokens = np.stack([np.asarray(s['tokens']) for s in samples]).astype(np.int64)
    return {'input_ids': torch.from_numpy(tokens)}


def build_plain(root: Path, domains: list[str], weights: list[float], batch: int, workers: int, batches: int,
                row_len: int) -> torch.utils.data.DataLoader:
    del batches, row_len
    from streaming import Stream, StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    clean_stale_shared_memory()
    streams = [Stream(local=str(root / d / 'train'), proportion=w) for d, w in zip(domains, weights)]
    dataset = StreamingDataset(streams=streams, shuffle=True, shuffle_seed=17, batch_size=batch, replication=None)
    return torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=workers, collate_fn=_stack_tokens,
                                       prefetch_factor=2 if workers else None)


def time_loader(loader: torch.utils.data.DataLoader, batches: int, batch: int) -> dict[str, Any]:
    """Time iterating ``batches`` batches (from ``iter()``, so worker start-up is included)."""
    domain_counts = None
    start = time.perf_counter()
    iterator = iter(loader)
    first = None
    seen = 0
    for seen, item in enumerate(iterator, start=1):
        ids = item['input_ids']
        assert ids.dtype == torch.int64 and ids.shape[0] == batch, (ids.dtype, ids.shape)
        if 'domain_id' in item:
            counts = torch.bincount(item['domain_id'], minlength=len(DOMAINS))
            domain_counts = counts if domain_counts is None else domain_counts + counts
        if first is None:
            first = time.perf_counter()
        if seen == batches:
            break
    end = time.perf_counter()
    del iterator
    if seen != batches:
        raise RuntimeError(f'loader ended after {seen} of {batches} batches')
    total = end - start
    steady = end - first
    return {
        'seconds': round(total, 4),
        'first_batch_s': round(first - start, 4),
        'samples_per_s': round(batches * batch / total, 1),
        'steady_samples_per_s': round((batches - 1) * batch / steady, 1) if batches > 1 else None,
        'domain_counts': None if domain_counts is None else domain_counts.tolist(),
    }


def bench_loader(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    domains = list(DOMAINS[:len(args.weights)])
    root = work / 'mds'
    log.info('Writing %d domains x %d rows x %d tokens of MDS shards to %s',
             len(domains), args.rows, args.row_len, root)
    t0 = time.perf_counter()
    make_shards(root, domains, args.rows, args.row_len, args.vocab, seed=0)
    log.info('Shards written in %.1f s', time.perf_counter() - t0)
    builders: dict[str, Callable[..., torch.utils.data.DataLoader]] = {
        'ours': build_ours, 'plain': build_plain, 'ours_ids_only': build_ours_ids,
    }
    kinds = list(builders)
    results: list[dict[str, Any]] = []
    for rep in range(args.repeats):
        for workers in args.workers:
            shift = rep % len(kinds)
            for kind in kinds[shift:] + kinds[:shift]:  # rotate the order between repeats
                log.info('loader rep %d workers %d: %s', rep, workers, kind)
                loader = builders[kind](root, domains, args.weights, args.batch, workers, args.batches, args.row_len)
                record = {'bench': 'loader', 'kind': kind, 'workers': workers, 'rep': rep, 'batch': args.batch,
                          'batches': args.batches, **time_loader(loader, args.batches, args.batch)}
                del loader
                gc.collect()
                emit(record)
                results.append(record)
    return results


# ----------------------------------------------------------------------------- prep
def stdlib_sources() -> list[Path]:
    stdlib = Path(sysconfig.get_paths()['stdlib'])
    return sorted(p for p in stdlib.rglob('*.py')
                  if 'site-packages' not in p.relative_to(stdlib).parts and p.is_file())


def make_jsonl(path: Path, megabytes: float) -> dict[str, int]:
    """Standard-library sources as documents (one JSON line each), cycled until the size is reached."""
    target = int(megabytes * 1e6)
    texts = []
    for source in stdlib_sources():
        try:
            text = source.read_bytes().decode('utf-8')
        except (OSError, UnicodeDecodeError):
            continue
        if text.strip():
            texts.append(text)
    written = docs = text_bytes = 0
    with path.open('w', encoding='utf-8') as out:
        while written < target:
            for text in texts:
                line = json.dumps({'text': text}) + '\n'
                out.write(line)
                written += len(line.encode('utf-8'))
                docs += 1
                text_bytes += len(text.encode('utf-8'))
                if written >= target:
                    break
    # Byte-level tokenizer: one token per UTF-8 byte, plus the EOS after each document.
    return {'file_bytes': written, 'documents': docs, 'tokens_with_eos': text_bytes + docs}


def mds_rows(folder: Path) -> int:
    index = json.loads((folder / 'index.json').read_text())
    return sum(int(shard['samples']) for shard in index['shards'])


def run_ours(jsonl: Path, tokenizer_dir: Path, out: Path, seq_len: int, budget: int, workers: int) -> dict[str, Any]:
    from data_prep.prep import PrepConfig, prepare

    config = PrepConfig(domains={'stdlib': [str(jsonl)]}, tokenizer=str(tokenizer_dir), seq_len=seq_len,
                        train_tokens=budget, eval_tokens=seq_len, out=out, workers=workers)
    start = time.perf_counter()
    manifest = prepare(config)
    seconds = time.perf_counter() - start
    splits = manifest.domains['stdlib'].splits
    tokens = sum(s.tokens for s in splits.values())
    rows = sum(mds_rows(out / 'stdlib' / split) for split in splits)
    assert rows * seq_len == tokens, (rows, tokens)
    return {'seconds': seconds, 'tokens': tokens, 'rows': rows,
            'train_rows': splits['train'].rows, 'eval_rows': splits['eval'].rows}


def run_foundry(jsonl: Path, tokenizer_dir: Path, out: Path, seq_len: int, eos_text: str,
                cache: Path) -> dict[str, Any]:
    import datasets
    from llmfoundry.command_utils.data_prep import convert_dataset_json as module

    # A fresh HF datasets cache per run, so every run converts the JSONL to Arrow as a first run would.
    datasets.config.HF_DATASETS_CACHE = cache
    original = module.build_hf_dataset
    phase: dict[str, float] = {}

    def timed_build(*a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return original(*a, **kw)
        finally:
            phase['load_dataset_s'] = time.perf_counter() - t

    module.build_hf_dataset = timed_build
    try:
        start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # it prints progress notes; stdout is for results
            # num_workers: accepted but unused by llm-foundry 0.22's convert_dataset_json (one process).
            module.convert_dataset_json(path=str(jsonl), out_root=str(out), compression=None,
                                        concat_tokens=seq_len, split='train', tokenizer=str(tokenizer_dir),
                                        eos_text=eos_text)
        seconds = time.perf_counter() - start
    finally:
        module.build_hf_dataset = original
    rows = mds_rows(out)
    return {'seconds': seconds, 'tokens': rows * seq_len, 'rows': rows,
            'load_dataset_s': round(phase.get('load_dataset_s', float('nan')), 3)}


def bench_prep(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    from data_prep.byte_tokenizer import EOS_TOKEN, ByteLevelTokenizer

    tokenizer_dir = work / 'byte_tokenizer'
    ByteLevelTokenizer().save_pretrained(str(tokenizer_dir))
    jsonl = work / 'stdlib.jsonl'
    log.info('Writing %.0f MB of JSONL (stdlib sources) to %s', args.prep_mb, jsonl)
    info = make_jsonl(jsonl, args.prep_mb)
    emit({'bench': 'prep_input', **info})
    # Import both sides before timing (llm-foundry's import alone takes seconds).
    import llmfoundry.command_utils.data_prep.convert_dataset_json  # noqa: F401

    import data_prep.prep  # noqa: F401

    results: list[dict[str, Any]] = []
    kinds = [('ours', w) for w in args.prep_workers] + [('foundry', None)]
    for rep in range(args.prep_repeats):
        for kind, workers in (kinds if rep % 2 == 0 else kinds[::-1]):
            out = work / f'prep_{kind}_{workers}_{rep}'
            log.info('prep rep %d: %s (workers %s)', rep, kind, workers)
            if kind == 'ours':
                result = run_ours(jsonl, tokenizer_dir, out, args.seq_len, info['tokens_with_eos'], workers)
            else:
                result = run_foundry(jsonl, tokenizer_dir, out, args.seq_len, EOS_TOKEN, work / f'hf_cache_{rep}')
            record = {'bench': 'prep', 'kind': kind, 'rep': rep, 'seq_len': args.seq_len, 'workers': workers,
                      **result, 'seconds': round(result['seconds'], 3),
                      'tokens_per_s': round(result['tokens'] / result['seconds'], 0)}
            emit(record)
            results.append(record)
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(work / f'hf_cache_{rep}', ignore_errors=True)
            gc.collect()
    return results


# ----------------------------------------------------------------------------- report
def _median(records: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in records)


def summarize(loader: list[dict[str, Any]], prep: list[dict[str, Any]], args: argparse.Namespace) -> None:
    summary: dict[str, Any] = {'bench': 'summary'}
    lines = []
    if loader:
        lines += [f'Loader: {len(args.weights)} domains x {args.rows} rows x {args.row_len} tokens, '
                  f'batch {args.batch}, '
                  f'{args.batches} batches per run, median of {args.repeats} (samples/s; "total" includes worker '
                  'start-up and the first batch)', '',
                  '| num_workers | ours total | plain total | ours / plain | ours steady | plain steady | '
                  'ours / plain (steady) | diagnostic: ours with ids-only collate | its ratio to plain |',
                  '|---|---|---|---|---|---|---|---|---|']
        for workers in args.workers:
            ours = [r for r in loader if r['kind'] == 'ours' and r['workers'] == workers]
            plain = [r for r in loader if r['kind'] == 'plain' and r['workers'] == workers]
            o, p = _median(ours, 'samples_per_s'), _median(plain, 'samples_per_s')
            os_, ps = _median(ours, 'steady_samples_per_s'), _median(plain, 'steady_samples_per_s')
            ids = _median([r for r in loader if r['kind'] == 'ours_ids_only' and r['workers'] == workers],
                          'samples_per_s')
            summary[f'loader_w{workers}'] = {'ours': o, 'plain': p, 'ratio': round(o / p, 3),
                                             'ours_steady': os_, 'plain_steady': ps,
                                             'ratio_steady': round(os_ / ps, 3),
                                             'ours_ids_only': ids, 'ratio_ids_only': round(ids / p, 3)}
            lines.append(f'| {workers} | {o:.0f} | {p:.0f} | **{o / p:.2f}** | {os_:.0f} | {ps:.0f} | '
                         f'{os_ / ps:.2f} | {ids:.0f} | {ids / p:.2f} |')
        lines.append('')
    if prep:
        foundry = [r for r in prep if r['kind'] == 'foundry']
        f = _median(foundry, 'tokens_per_s')
        lines += [f'Prep: seq len {args.seq_len}, median of {args.prep_repeats}', '',
                  '| tool | tokens written | median s | median tokens/s | ours / foundry |', '|---|---|---|---|---|']
        for workers in args.prep_workers:
            ours = [r for r in prep if r['kind'] == 'ours' and r['workers'] == workers]
            o = _median(ours, 'tokens_per_s')
            summary[f'prep_w{workers}'] = {'ours_tokens_per_s': o, 'foundry_tokens_per_s': f,
                                           'ratio': round(o / f, 3), 'ours_tokens': ours[0]['tokens'],
                                           'foundry_tokens': foundry[0]['tokens']}
            lines.append(f'| shear prep (workers {workers}) | {ours[0]["tokens"]:,} | '
                         f'{_median(ours, "seconds"):.2f} | {o:,.0f} | **{o / f:.2f}** |')
        lines += [f'| llm-foundry convert_dataset_json | {foundry[0]["tokens"]:,} | '
                  f'{_median(foundry, "seconds"):.2f} | {f:,.0f} | |', '']
    emit(summary)
    print()
    print('\n'.join(lines))


def private_tmpdir() -> Path:
    """A private temp folder as TMPDIR, and offline hubs; before streaming / datasets are imported."""
    work = tempfile.mkdtemp(prefix='shear-bench-data-')
    os.environ['TMPDIR'] = work
    tempfile.tempdir = None  # re-read TMPDIR
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
    os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
    return Path(work)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rows', type=int, default=4000, help='rows per domain of the loader shards')
    parser.add_argument('--row-len', type=int, default=512, help='tokens per row of the loader shards')
    parser.add_argument('--vocab', type=int, default=49152, help='token ids are drawn below this')
    parser.add_argument('--weights', type=float, nargs='+', default=[0.5, 0.3, 0.2], help='one per domain (<= 3)')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--batches', type=int, default=1000,
                        help='batches iterated per loader run (at most rows * domains / batch)')
    parser.add_argument('--workers', type=int, nargs='+', default=[0, 2], help='DataLoader num_workers values')
    parser.add_argument('--repeats', type=int, default=3, help='loader runs per kind and num_workers')
    parser.add_argument('--prep-mb', type=float, default=32, help='size of the generated JSONL in MB')
    parser.add_argument('--seq-len', type=int, default=2048, help='prep row length')
    parser.add_argument('--prep-workers', type=int, nargs='+', default=[2, 1],
                        help='shear prep tokenizer processes; the first value is the headline comparison')
    parser.add_argument('--prep-repeats', type=int, default=2)
    parser.add_argument('--skip-loader', action='store_true')
    parser.add_argument('--skip-prep', action='store_true')
    parser.add_argument('--keep', action='store_true', help='keep the temp folder')
    args = parser.parse_args(argv)
    if len(args.weights) > len(DOMAINS):
        parser.error(f'at most {len(DOMAINS)} weights')
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s',
                        stream=sys.stderr)
    for noisy in ('streaming', 'datasets', 'filelock', 'data_prep.mds'):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    work = private_tmpdir()
    log.info('Working in %s', work)
    start = time.perf_counter()
    try:
        loader = [] if args.skip_loader else bench_loader(args, work)
        prep = [] if args.skip_prep else bench_prep(args, work)
        summarize(loader, prep, args)
    finally:
        log.info('Total %.1f s', time.perf_counter() - start)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
