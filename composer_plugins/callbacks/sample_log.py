"""Write which samples each rank trained on: ``<out_dir>/rank<r>.jsonl``, one line per batch.

Each line is ``{"batch": b, "domain": [...], "index": [...]}`` from the ``domain_id`` and
``sample_index`` the ``domain_mixture`` loader puts in every batch: an audit of the data
order, and how resume exactness is checked. Logs no metrics.
"""
from __future__ import annotations

import json
from pathlib import Path

from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist


class SampleLog(Callback):
    """Registered as ``sample_log``.

    Args:
        out_dir: folder of the per-rank JSON-lines files (appended to across restarts).
    """

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def after_dataloader(self, state: State, logger: Logger) -> None:
        batch = state.batch
        if 'domain_id' not in batch or 'sample_index' not in batch:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        line = {
            'batch': int(state.timestamp.batch),
            'domain': batch['domain_id'].tolist(),
            'index': batch['sample_index'].tolist(),
        }
        with open(self.out_dir / f'rank{dist.get_global_rank()}.jsonl', 'a', encoding='utf-8') as f:
            f.write(json.dumps(line) + '\n')
