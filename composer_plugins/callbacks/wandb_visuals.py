"""Pictures and tables for W&B: what a person would rather look at than read.

Registered as ``wandb_visuals`` and added to every run with an enabled ``wandb`` logger
(:func:`~composer_plugins.config.foundry.to_foundry_config`). Without a Composer
``WandBLogger`` among the Trainer's loggers it does nothing: it draws nothing and logs
nothing. With one, on rank 0, through Composer's logger API:

* ``masks/heatmap`` (``logger.log_images``), after every evaluation of a pruning run (when
  ``pruning_monitor`` writes its mask snapshot): the kept fraction of query heads, KV groups
  and FFN channels per layer of the deterministic masks, the report's heatmap
  (:func:`~composer_plugins.models.mask_heatmap.draw_mask_heatmap`);
* ``eval/<domain>/ref_loss`` and ``eval/<domain>/gap`` (to the W&B logger only), after every
  evaluation of a ``dynamic_loading`` run with reference losses: the line each domain's eval
  loss is steered towards, and the distance to it;
* ``tables/model_shape`` and ``tables/domain_weights`` (``logger.log_table``) at the end of
  the run: the source and target (exported) shape of a pruning run, or the model's shape, and
  the final domain weights of a ``domain_mixture`` run.

Arguments: :class:`~composer_plugins.config.wandb_visuals.WandbVisualsConfig`.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

from composer.core import Callback, State
from composer.loggers import Logger, LoggerDestination, WandBLogger
from composer.utils import dist

from composer_plugins.callbacks.trainer_state import domain_eval_loss, unwrapped_model
from composer_plugins.config.typed import from_dict
from composer_plugins.config.wandb_visuals import HEATMAP_KEY, SHAPE_TABLE_KEY, WEIGHTS_TABLE_KEY, WandbVisualsConfig
from composer_plugins.errors import ShearError

log = logging.getLogger(__name__)

NAME = 'wandb_visuals'
SHAPE_COLUMNS = ['model', 'layers', 'heads', 'kv heads', 'head dim', 'hidden', 'ffn', 'params']
WEIGHTS_COLUMNS = ['domain', 'final weight']  # samples per domain: the data/samples/* curves


def wandb_destination(logger: Logger) -> Optional[LoggerDestination]:
    """The Trainer's ``WandBLogger``, or None."""
    return next((d for d in logger.destinations if isinstance(d, WandBLogger)), None)


class WandbVisuals(Callback):
    """Registered as ``wandb_visuals``.

    Args:
        **kwargs: the fields of :class:`~composer_plugins.config.wandb_visuals.WandbVisualsConfig`.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.config: WandbVisualsConfig = from_dict(WandbVisualsConfig, kwargs, f'callbacks.{NAME}')
        self._wandb: Optional[LoggerDestination] = None

    @property
    def active(self) -> bool:
        """A ``WandBLogger`` was found at fit start, and this is rank 0."""
        return self._wandb is not None and dist.get_global_rank() == 0

    def fit_start(self, state: State, logger: Logger) -> None:
        self._wandb = wandb_destination(logger)
        if self._wandb is None:
            log.info('wandb_visuals: no WandBLogger among the loggers; nothing is drawn or logged')

    def eval_after_all(self, state: State, logger: Logger) -> None:
        if not self.active:
            return
        step = int(state.timestamp.batch.value)
        if self.config.heatmap:
            self._log_heatmap(state, logger, step)
        if self.config.gap:
            self._log_gaps(state, step)

    def fit_end(self, state: State, logger: Logger) -> None:
        if not self.active or not self.config.tables:
            return
        step = int(state.timestamp.batch.value)
        logger.log_table(SHAPE_COLUMNS, shape_rows(unwrapped_model(state)), name=SHAPE_TABLE_KEY, step=step)
        rows = domain_weight_rows(state)
        if rows:
            logger.log_table(WEIGHTS_COLUMNS, rows, name=WEIGHTS_TABLE_KEY, step=step)
        log.info('wandb_visuals: logged %s%s at batch %d', SHAPE_TABLE_KEY,
                 f' and {WEIGHTS_TABLE_KEY}' if rows else '', step)

    def _log_heatmap(self, state: State, logger: Logger, step: int) -> None:
        model = unwrapped_model(state)
        out = getattr(model, 'last_pruner_output', None)
        if getattr(model, 'pruner', None) is None or out is None:
            return
        from composer_plugins.models.mask_heatmap import draw_mask_heatmap, figure_to_rgb, layer_keep

        masks = {name: mask.detach().float().cpu() for name, mask in out.masks.items()}
        try:
            keep = layer_keep(masks)
        except ShearError:  # only a hidden mask: nothing per layer to draw
            return
        image = figure_to_rgb(draw_mask_heatmap(keep, f'kept fraction, masks step {step}'), dpi=self.config.dpi)
        # use_table=False: an image under HEATMAP_KEY (a media panel), not a one-cell table of it
        logger.log_images(image, name=HEATMAP_KEY, channels_last=True, step=step, use_table=False)
        log.info('wandb_visuals: logged %s (%dx%d) at batch %d', HEATMAP_KEY, image.shape[1], image.shape[0], step)

    def _log_gaps(self, state: State, step: int) -> None:
        refs = reference_losses(state)
        if not refs:
            return
        metrics: dict[str, float] = {}
        for domain, ref in refs.items():
            loss = domain_eval_loss(state, domain)
            if loss is not None:
                metrics[f'eval/{domain}/ref_loss'] = ref
                metrics[f'eval/{domain}/gap'] = loss - ref
        if metrics:
            self._wandb.log_metrics(metrics, step)


def shape_rows(model: Any) -> list[list[Any]]:
    """Rows of :data:`SHAPE_COLUMNS`: ``source`` and ``target`` of a pruning run, else the model's ``model``."""
    from composer_plugins.pruning.shapes import ModelShape, count_params

    pruner = getattr(model, 'pruner', None)
    if pruner is not None:
        shapes = [('source', pruner.source), ('target (exported)', pruner.target)]
    else:
        shapes = [('model', ModelShape.from_hf_config(model.model.config))]
    return [[name, s.num_layers, s.num_attention_heads, s.num_key_value_heads, s.head_dim, s.hidden_size,
             s.intermediate_size, count_params(s)] for name, s in shapes]


def domain_weight_rows(state: State) -> list[list[Any]]:
    """Rows of :data:`WEIGHTS_COLUMNS` for a ``domain_mixture`` train loader (the weights of the next
    interval, i.e. the last that dynamic loading chose), else none."""
    from composer_plugins.data.mixture_loader import DomainMixtureDataset

    dataset = getattr(state.train_dataloader, 'dataset', None)
    if not isinstance(dataset, DomainMixtureDataset):
        return []
    return [[domain, float(weight)] for domain, weight in zip(dataset.domains, dataset.next_weights)]


def reference_losses(state: State) -> dict[str, float]:
    """``{domain: reference loss}`` of the run's ``dynamic_loading`` callback, or empty (none, or no references).

    Read through the callback's own resolution of ``ref_losses`` (its domain order, its checks), so
    these are exactly the references its rule used.
    """
    from composer_plugins.callbacks.dynamic_loading import DynamicLoading

    callback = next((c for c in state.callbacks if isinstance(c, DynamicLoading)), None)
    dataset = getattr(state.train_dataloader, 'dataset', None)
    if callback is None or getattr(callback.config, 'ref_losses', None) is None or dataset is None:
        return {}
    try:
        refs = callback.reference_losses(dataset.domains)
    except (AttributeError, ShearError) as err:
        log.debug('wandb_visuals: no reference losses (%s)', err)
        return {}
    return {domain: float(ref) for domain, ref in zip(dataset.domains, refs)}

