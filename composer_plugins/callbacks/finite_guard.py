"""Finite guard: a non-finite loss stops the run, and no checkpoint with non-finite weights is written.

Registered as ``finite_guard`` and added to every run by the config (``callbacks.finite_guard``
only tunes it). A functional core and a thin Composer class, like Composer's gradient clipping:

* :func:`is_nonfinite` -- whether a loss (a tensor, or a dict with ``total``) is NaN or +-inf,
  agreed across ranks (one max all-reduce of a flag, so every rank stops together);
* :func:`nonfinite_tensors` -- the names of parameters and buffers with a NaN or +-inf
  entry (each rank checks its own shard; the verdict is all-reduced the same way).

The callback, per training batch:

1. ``AFTER_LOSS`` (every microbatch, after the algorithms, so after distillation's loss): a
   non-finite loss either stops the run with :class:`~composer_plugins.errors.TrainingStopped`
   naming the batch and the last checkpoint written, or, while fewer than
   ``max_nonfinite_batches`` batches in a row were bad, marks the batch to be skipped.
   Stopping here, before backward, means the bad loss never reaches an optimizer.
2. ``AFTER_BACKWARD`` of a skipped batch: every gradient is set to ``None``, so the weights'
   optimizer and the mask / multiplier callbacks' optimizers leave their parameters and
   state alone (torch optimizers skip parameters without a gradient).
3. Every checkpoint: at ``FIT_START`` the ``save_interval`` of each checkpointing callback
   (Composer's ``CheckpointSaver``, llm-foundry's ``hf_checkpointer``) is wrapped so that a
   save first checks the weights; non-finite weights stop the run instead of being written.
   The check runs only when a checkpoint is due, so ordinary batches pay one scalar test.

Since nothing non-finite is ever written, rotation (``save_num_checkpoints_to_keep``) only
ever deletes finite checkpoints in favour of newer finite ones, and ``autoresume`` after a
stop continues from the newest good checkpoint.

Metrics: ``guard/skipped_batches`` (running count), when a batch is skipped.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import torch
from composer.callbacks import CheckpointSaver
from composer.core import Callback, Event, State
from composer.loggers import Logger
from composer.utils import dist

from composer_plugins.config.guards import FiniteGuardConfig
from composer_plugins.config.typed import from_dict
from composer_plugins.errors import TrainingStopped

log = logging.getLogger(__name__)

NAME = 'finite_guard'
_WRAPPED = '_shear_finite_guard'


def _any_rank(flag: bool, device: torch.device) -> bool:
    """``flag`` or'ed over all ranks (one max all-reduce; free in a single process)."""
    if dist.get_world_size() <= 1:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, reduce_operation='MAX')
    return bool(tensor.item() > 0)


def total_loss(loss: Any) -> torch.Tensor:
    """The scalar that backward runs on: the tensor itself, the ``total`` of a dict, else the sum of the parts."""
    if isinstance(loss, torch.Tensor):
        return loss
    if isinstance(loss, dict):
        return loss['total'] if 'total' in loss else sum(loss.values())
    return sum(loss)


def is_nonfinite(loss: Any) -> bool:
    """Whether ``loss`` is NaN or +-inf on any rank."""
    value = total_loss(loss).detach()
    return _any_rank(not bool(torch.isfinite(value).all()), value.device)


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """A DTensor's local shard (FSDP2), or the tensor itself."""
    to_local = getattr(tensor, 'to_local', None)
    return to_local() if callable(to_local) else tensor


def nonfinite_tensors(module: torch.nn.Module, limit: int = 3) -> list[str]:
    """Names of up to ``limit`` parameters / floating buffers of this rank's shard with a non-finite entry."""
    bad = []
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        local = _local(tensor.detach())
        if local.is_floating_point() and local.numel() and not bool(torch.isfinite(local).all()):
            bad.append(name)
            if len(bad) >= limit:
                break
    return bad


def last_checkpoint(state: State) -> Optional[str]:
    """The newest checkpoint Composer's ``CheckpointSaver`` wrote in this run (or loaded on resume), if any."""
    for callback in state.callbacks:
        if isinstance(callback, CheckpointSaver) and callback.saved_checkpoints:
            return str(callback.saved_checkpoints[-1])
    if state.load_path:
        return str(state.load_path)
    return None


class FiniteGuard(Callback):
    """Stops at a non-finite loss (or skips up to ``max_nonfinite_batches`` in a row); never saves non-finite weights.

    Args:
        **kwargs: the fields of :class:`~composer_plugins.config.guards.FiniteGuardConfig`.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.config: FiniteGuardConfig = from_dict(FiniteGuardConfig, kwargs, f'callbacks.{NAME}')
        self._in_row = 0
        self._skipped = 0
        self._skip_batch: Optional[int] = None

    # -- events ---------------------------------------------------------------------------
    def fit_start(self, state: State, logger: Logger) -> None:
        for callback in state.callbacks:
            interval = getattr(callback, 'save_interval', None)
            if callable(interval) and not getattr(interval, _WRAPPED, False):
                callback.save_interval = self._checked_before_saving(interval, type(callback).__name__)

    def after_loss(self, state: State, logger: Logger) -> None:
        batch = int(state.timestamp.batch)
        if self._skip_batch == batch or not is_nonfinite(state.loss):
            return
        self._in_row += 1
        value = float(total_loss(state.loss).detach().float().reshape(-1)[0])
        if self._in_row > self.config.max_nonfinite_batches:
            raise TrainingStopped(
                f'training loss is {value} at batch {batch + 1} ({self._in_row} non-finite batch(es) in a row, '
                f'callbacks.{NAME}.max_nonfinite_batches={self.config.max_nonfinite_batches}); stopped before '
                f'the optimizer step. {self._describe_last_good(state)}')
        self._skip_batch = batch
        self._skipped += 1
        log.warning('%s: loss %s at batch %d; batch skipped (%d in a row, at most %d)', NAME, value, batch + 1,
                    self._in_row, self.config.max_nonfinite_batches)

    def after_backward(self, state: State, logger: Logger) -> None:
        if self._skip_batch == int(state.timestamp.batch):
            for param in state.model.parameters():
                param.grad = None

    def batch_end(self, state: State, logger: Logger) -> None:
        if self._skip_batch is None:
            self._in_row = 0
        else:
            logger.log_metrics({'guard/skipped_batches': float(self._skipped)})
            self._skip_batch = None

    # -- checkpoints ----------------------------------------------------------------------
    def _checked_before_saving(self, interval: Callable[[State, Event], bool],
                               saver: str) -> Callable[[State, Event], bool]:
        def save_due(state: State, event: Event) -> bool:
            due = interval(state, event)
            if due:
                self._check_weights(state, saver)
            return due
        setattr(save_due, _WRAPPED, True)
        return save_due

    def _check_weights(self, state: State, saver: str) -> None:
        bad = nonfinite_tensors(state.model)
        device = next(state.model.parameters()).device
        if _any_rank(bool(bad), device):
            where = f' ({", ".join(bad)} on rank {dist.get_global_rank()})' if bad else ''
            raise TrainingStopped(
                f'non-finite weights at batch {int(state.timestamp.batch)}{where}; {saver} did not write this '
                f'checkpoint. {self._describe_last_good(state)}')

    @staticmethod
    def _describe_last_good(state: State) -> str:
        path = last_checkpoint(state)
        if path is None:
            return 'No checkpoint was written before it; lower optimizer.lr or check the data.'
        return (f'The last good checkpoint is {path}: rerun with autoresume: true (or load_path) and a lower '
                'optimizer.lr to continue from it.')

    # -- checkpoint state -----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {'skipped_batches': self._skipped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._skipped = int(state.get('skipped_batches', 0))
