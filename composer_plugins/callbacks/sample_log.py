"""Write which samples each rank trained on: ``<out_dir>/rank<r>.jsonl``, one line per batch.

Each line is ``{"batch": b, "domain": [...], "index": [...]}`` from the ``domain_id`` and
``sample_index`` the ``domain_mixture`` loader puts in every batch: an audit of the data
order, and how resume exactness is checked. Logs no metrics.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

from composer_plugins.config.callback_args import SampleLogConfig
from composer_plugins.config.typed import from_dict

NAME = 'sample_log'


class SampleLog(Callback):
    """Registered as ``sample_log``.

    Args:
        **kwargs: the fields of :class:`~composer_plugins.config.callback_args.SampleLogConfig`
            (``out_dir``: folder of the per-rank JSON-lines files), validated here.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.config: SampleLogConfig = from_dict(SampleLogConfig, kwargs, f'callbacks.{NAME}')
        self.out_dir = Path(self.config.out_dir)

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
