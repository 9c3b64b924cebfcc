"""The ``wandb_visuals`` callback, without a run: inert without a WandBLogger, and what it hands the logger.

A real offline W&B run's images and tables are checked in ``tests/loggers/test_run_loggers.py``.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from composer.loggers import WandBLogger

from composer_plugins.callbacks import wandb_visuals
from composer_plugins.callbacks.wandb_visuals import HEATMAP_KEY, WandbVisuals
from composer_plugins.models import mask_heatmap
from composer_plugins.pruning.shapes import ModelShape

SOURCE = ModelShape(num_layers=2, hidden_size=16, num_attention_heads=4, num_key_value_heads=2, head_dim=4,
                    intermediate_size=32, vocab_size=64)
TARGET = ModelShape(num_layers=1, hidden_size=8, num_attention_heads=2, num_key_value_heads=1, head_dim=4,
                    intermediate_size=16, vocab_size=64)
MASKS = {'layer': torch.tensor([1.0, 0.0]), 'kv_group': torch.tensor([[1.0, 0.0], [1.0, 1.0]]),
         'intermediate': (torch.arange(64).reshape(2, 32) % 2).float(), 'hidden': torch.ones(16)}


class RecordingLogger:
    """The parts of Composer's ``Logger`` the callback calls, recorded."""

    def __init__(self, destinations: list[Any]) -> None:
        self.destinations = destinations
        self.images: list[tuple[str, np.ndarray, int]] = []
        self.tables: list[tuple[str, list[str], list[list[Any]]]] = []

    def log_images(self, images: Any, name: str, channels_last: bool, step: int, use_table: bool = True) -> None:
        assert channels_last and not use_table
        self.images.append((name, images, step))

    def log_table(self, columns: list[str], rows: list[list[Any]], name: str, step: int) -> None:
        self.tables.append((name, columns, rows))


def _state() -> SimpleNamespace:
    model = SimpleNamespace(pruner=SimpleNamespace(source=SOURCE, target=TARGET),
                            last_pruner_output=SimpleNamespace(masks=MASKS))
    return SimpleNamespace(model=model, timestamp=SimpleNamespace(batch=SimpleNamespace(value=10)),
                           callbacks=[], train_dataloader=None, eval_metrics={})


def test_without_a_wandb_logger_it_draws_and_logs_nothing(monkeypatch):
    def no_drawing(*args: Any, **kwargs: Any) -> None:
        raise AssertionError('drew a heatmap with W&B off')

    monkeypatch.setattr(mask_heatmap, 'draw_mask_heatmap', no_drawing)
    callback, logger, state = WandbVisuals(), RecordingLogger([]), _state()
    callback.fit_start(state, logger)
    callback.eval_after_all(state, logger)
    callback.fit_end(state, logger)
    assert not callback.active and logger.images == [] and logger.tables == []


def test_with_a_wandb_logger_it_logs_the_heatmap_and_the_shape_table():
    callback, logger, state = WandbVisuals(dpi=40), RecordingLogger([WandBLogger(project='unused')]), _state()
    callback.fit_start(state, logger)
    callback.eval_after_all(state, logger)
    ((name, image, step),) = logger.images
    assert (name, step, image.dtype, image.ndim, image.shape[2]) == (HEATMAP_KEY, 10, np.uint8, 3, 3)
    assert image.std() > 0  # a picture, not a blank
    callback.fit_end(state, logger)
    ((name, columns, rows),) = logger.tables  # no domain_mixture loader: no weights table
    assert name == 'tables/model_shape' and columns == wandb_visuals.SHAPE_COLUMNS
    assert [row[:2] for row in rows] == [['source', 2], ['target (exported)', 1]]


def test_the_heatmap_reads_the_masks_per_layer():
    keep = mask_heatmap.layer_keep(MASKS)
    assert keep.kept_layers == [0] and keep.hidden == (16, 16)
    assert keep.fractions == [[0.5, 0.5, 0.5], [1.0, 1.0, 0.5]]


@pytest.mark.parametrize('off', [{'heatmap': False, 'tables': False}])
def test_each_part_can_be_switched_off(off):
    callback, logger, state = WandbVisuals(**off), RecordingLogger([WandBLogger(project='unused')]), _state()
    callback.fit_start(state, logger)
    callback.eval_after_all(state, logger)
    callback.fit_end(state, logger)
    assert logger.images == [] and logger.tables == []
