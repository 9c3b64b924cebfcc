"""Typed arguments of the ``wandb_visuals`` callback (no torch import, checked at config load)."""
from __future__ import annotations

from dataclasses import dataclass

from composer_plugins.errors import ConfigError

HEATMAP_KEY = 'masks/heatmap'
SHAPE_TABLE_KEY = 'tables/model_shape'
WEIGHTS_TABLE_KEY = 'tables/domain_weights'
"""The W&B keys of the callback's image and tables (the dashboard's panels name them too)."""


@dataclass
class WandbVisualsConfig:
    """``callbacks.wandb_visuals``: the pictures and tables a run logs to W&B (and only to W&B).

    The callback is added to every run whose ``loggers`` has an enabled ``wandb`` logger
    (:func:`~composer_plugins.config.foundry.to_foundry_config`); without a ``WandBLogger``
    among the Trainer's loggers it does nothing at all.

    Attributes:
        heatmap: at each mask snapshot (after every evaluation of a pruning run) log the
            heatmap of kept query heads, KV groups and FFN channels per layer as the image
            ``masks/heatmap``.
        tables: at the end of the run log ``tables/model_shape`` (source and target shape of a
            pruning run, or the model's shape) and ``tables/domain_weights`` (the final weights
            of a ``domain_mixture`` run).
        gap: after every evaluation of a ``dynamic_loading`` run with reference losses, log
            ``eval/<domain>/ref_loss`` and ``eval/<domain>/gap`` (eval loss minus reference).
        dpi: resolution of the heatmap image (dots per inch of a 6-inch-wide figure).
    """
    heatmap: bool = True
    tables: bool = True
    gap: bool = True
    dpi: int = 80

    def validate(self, path: str) -> None:
        if not 20 <= self.dpi <= 300:
            raise ConfigError(f'{path}.dpi: got {self.dpi}; expected 20 to 300')
