"""Append every logged metric to ``<path>`` as JSON lines (rank 0 only), for reports.

Each line is ``{"batch": <completed batches>, "<metric key>": <value>, ...}`` for one
``log_metrics`` call, with the keys as Composer and our callbacks log them
(``loss/train/total``, ``l0/expected_sparsity/<mask>``, ``data/weight/<domain>``,
``eval/<domain>/loss``, ``metrics/eval/<label>/LanguageCrossEntropy``, ...).
Registered in llm-foundry's logger registry as ``jsonl``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import torch
from composer.core import State
from composer.loggers import Logger, LoggerDestination
from composer.utils import dist


class JsonlMetricsLogger(LoggerDestination):
    """Args:
        path: the JSON-lines file (its folder is created; lines are appended across restarts).
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = Path(path)

    def init(self, state: State, logger: Logger) -> None:
        del logger
        if dist.get_global_rank() == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def log_metrics(self, metrics: dict[str, Any], step: Optional[int] = None) -> None:
        if dist.get_global_rank() != 0:
            return
        record: dict[str, Any] = {'batch': int(step or 0)}  # Composer passes the batch count
        for key, value in metrics.items():
            number = _to_number(value)
            if number is not None:
                record[key] = number
        if len(record) > 1:
            with open(self.path, 'a', encoding='utf-8') as f:
                f.write(json.dumps(record) + '\n')


def _to_number(value: Any) -> Optional[float]:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return None
        value = value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = float(value)
        return value if math.isfinite(value) else None
    return None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a metrics file, in order."""
    with open(path, encoding='utf-8') as f:
        return [json.loads(line) for line in f if line.strip()]
