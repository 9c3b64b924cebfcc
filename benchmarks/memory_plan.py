"""`shear plan --device cpu` against measured peak RSS of real CPU training runs.

For each run (continued pre-training, pruning, and continued pre-training distilled from a
10-layer teacher, of a SmolLM2-shaped model with --layers layers, 4 x 256 tokens, 3 batches, fp32;
see composer_plugins/tools/planning/measure.py), plan it
with the memory formula, run `python train.py` as a subprocess, read its peak RSS
(`os.wait4` ru_maxrss) and print a markdown table of estimate vs measured.

    PYTHONPATH=. python benchmarks/memory_plan.py [--layers 10 4] [--keep DIR]
"""
from __future__ import annotations

import argparse
import logging
import platform
import shutil
import tempfile
from pathlib import Path

import torch

from composer_plugins.tools.planning.measure import (
    BATCHES,
    SEQ_LEN,
    compare,
    continue_case,
    distill_case,
    prune_case,
    write_corpus,
    write_teacher,
)

GIB = 2 ** 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--layers', type=int, nargs='+', default=[10, 4], help='layer counts to measure')
    parser.add_argument('--keep', default=None, help='work folder to keep (default: a deleted temp folder)')
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger('composer_plugins.tools.planning').setLevel(logging.ERROR)

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix='memory-plan-'))
    try:
        data_dir = write_corpus(work / 'data')
        rows = []
        for layers in args.layers:
            teacher = write_teacher(work / 'teacher-10l', 10)
            for case in (continue_case(layers), prune_case(layers), distill_case(layers, teacher)):
                rows.append(compare(case, layers, work, data_dir))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print(f'torch {torch.__version__}, Python {platform.python_version()}, {torch.get_num_threads()} threads; '
          f'{BATCHES} batches of 4 x {SEQ_LEN} tokens, fp32')
    print()
    print('| run | layers | microbatch | estimate (GiB) | measured peak RSS (GiB) | estimate / measured '
          '| run time (s) |')
    print('|---|---|---|---|---|---|---|')
    for row in rows:
        microbatch = next(o.split('=')[1] for o in row.case.overrides if o.startswith('device_train_microbatch_size'))
        print(f'| {row.case.name} | {row.layers} | {microbatch} | {row.estimate / GIB:.2f} | '
              f'{row.measurement.peak_rss / GIB:.2f} | {row.ratio:.3f} | {row.measurement.seconds:.0f} |')


if __name__ == '__main__':
    main()
