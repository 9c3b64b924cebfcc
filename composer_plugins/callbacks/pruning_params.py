"""What the two pruning callbacks share: finding the pruner, owning its parameters, saving optimizer state.

The masks' log-alphas and the Lagrange multipliers stay parameters of the model (so FSDP2
shards them and reduces their gradients, and the checkpoint's model state holds them),
but each callback takes its own parameters out of the weights' optimizers at ``Event.INIT``,
before Composer wraps the model or loads a checkpoint, and steps them with an optimizer of
its own. Their optimizer state is checkpointed as full (unsharded) tensors, so a run
resumes on any number of ranks.
"""
from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from typing import Any, Optional

import torch
from composer.core import State, TimeUnit

from composer_plugins.callbacks.trainer_state import unwrapped_model
from composer_plugins.errors import ShearError
from composer_plugins.pruning.config import require_armed


def pruning_model(state: State, callback: str) -> Any:
    """The :class:`~composer_plugins.models.causal_lm.ShearCausalLM` of the run (unwrapping DDP)."""
    from composer_plugins.models.causal_lm import ShearCausalLM

    model = unwrapped_model(state)
    if not isinstance(model, ShearCausalLM) or model.pruner is None:
        raise ShearError(f'callbacks.{callback}: needs model.pruning (a shear_causal_lm model with masks)')
    return model


def arm(state: State, callback: str) -> Any:
    """At ``Event.INIT``: the pruning model, once the run is known to have both mask callbacks
    (:func:`~composer_plugins.pruning.config.require_armed`); marks ``callback`` armed on it."""
    model = pruning_model(state, callback)
    require_armed({getattr(other, 'callback_name', None) for other in state.callbacks})
    model.armed_by.add(callback)
    return model


def remove_from_optimizers(optimizers: Sequence[torch.optim.Optimizer], params: Iterable[torch.nn.Parameter]) -> int:
    """Takes ``params`` out of every param group of ``optimizers`` (dropping emptied groups); returns how many."""
    ids = {id(p) for p in params}
    removed = 0
    for optimizer in optimizers:
        kept_groups = []
        for group in optimizer.param_groups:
            before = len(group['params'])
            group['params'] = [p for p in group['params'] if id(p) not in ids]
            removed += before - len(group['params'])
            if group['params']:
                kept_groups.append(group)
        optimizer.param_groups[:] = kept_groups
    return removed


class HeldGradients:
    """The gradients of a mask callback's parameters, held out of ``.grad`` from each microbatch's backward
    (``Event.AFTER_BACKWARD``) until the callback steps them (``Event.AFTER_TRAIN_BATCH``).

    Composer runs algorithms before callbacks, so its ``gradient_clipping`` (which clips every
    ``.grad`` of the model at ``AFTER_TRAIN_BATCH``) then sees and clips the weights' gradients
    only; the log-alphas and the multipliers step on their own gradients. A non-finite gradient
    in any microbatch drops the whole batch's (as ``finite_guard`` drops the weights').
    """

    def __init__(self) -> None:
        self._held: Optional[list[Optional[torch.Tensor]]] = None
        self._nonfinite = False

    def take(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Adds the parameters' gradients to the held ones and clears ``.grad``."""
        grads = [p.grad for p in params]
        for param in params:
            param.grad = None
        self._nonfinite |= any(g is not None and not bool(torch.isfinite(_local(g)).all()) for g in grads)
        if self._held is None:
            self._held = grads
        else:
            self._held = [h if g is None else g if h is None else h + g for h, g in zip(self._held, grads)]

    def give_back(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Puts the held gradients back into ``.grad`` (None after a non-finite one) and forgets them."""
        held = None if self._nonfinite else self._held
        for i, param in enumerate(params):
            param.grad = None if held is None else held[i]
        self._held, self._nonfinite = None, False


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's shard of an FSDP2 ``DTensor``, or the tensor itself."""
    return tensor.to_local() if hasattr(tensor, 'to_local') else tensor


def check_saved_state(state: dict[str, Any], version: int, config: dict[str, Any], callback: str) -> bool:
    """Checks a callback's checkpointed state against this run; True when it holds optimizer state to restore.

    Raises:
        ShearError: another state version, or a config that differs from the one it was saved with.
    """
    if state.get('version') != version:
        raise ShearError(f'callbacks.{callback}: checkpoint state version {state.get("version")} != {version}')
    if state.get('config') != config:
        raise ShearError(f'callbacks.{callback}: the checkpoint was written with {state.get("config")}, this run '
                         f'has {config}; resume with the same settings')
    return state.get('optimizer') is not None


def full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor, gathered if FSDP2 sharded it (a collective then: call it on every rank)."""
    if hasattr(tensor, 'full_tensor'):
        return tensor.full_tensor()
    return tensor


def write_full(param: torch.Tensor, value: torch.Tensor) -> None:
    """Sets ``param`` (plain or FSDP2-sharded) to the full tensor ``value`` (the same on every rank)."""
    with torch.no_grad():
        if hasattr(param, 'device_mesh'):
            from torch.distributed.tensor import distribute_tensor

            value = distribute_tensor(value.to(param.device), param.device_mesh, param.placements)
        param.copy_(value.to(param.device, param.dtype))


def optimizer_state(optimizer: torch.optim.Optimizer, names: Sequence[str]) -> dict[str, Any]:
    """``optimizer``'s per-parameter state by parameter name, as full CPU tensors, plus its hyperparameters."""
    params = [p for group in optimizer.param_groups for p in group['params']]
    per_param = {}
    for name, param in zip(names, params):
        entry = optimizer.state.get(param, {})
        per_param[name] = {key: full(value).detach().cpu().clone() if torch.is_tensor(value) else value
                           for key, value in entry.items()}
    return {'params': per_param, 'lr': [group['lr'] for group in optimizer.param_groups]}


def load_optimizer_state(optimizer: torch.optim.Optimizer, names: Sequence[str], saved: dict[str, Any],
                         callback: str) -> None:
    """Restores :func:`optimizer_state` output into ``optimizer`` (resharding each tensor like its parameter)."""
    params = [p for group in optimizer.param_groups for p in group['params']]
    if sorted(saved['params']) != sorted(names):
        raise ShearError(f'callbacks.{callback}: the checkpoint holds optimizer state for {sorted(saved["params"])}, '
                         f'this run has {sorted(names)}')
    for name, param in zip(names, params):
        entry = {}
        for key, value in saved['params'][name].items():
            if torch.is_tensor(value) and value.shape == param.shape and value.dim() > 0:
                like = torch.empty_like(param)
                write_full(like, value)
                value = like
            elif torch.is_tensor(value):
                value = value.clone()
            entry[key] = value
        optimizer.state[param] = entry
    for group, lr in zip(optimizer.param_groups, saved['lr']):
        group['lr'] = lr


def total_batches(state: State) -> int:
    """``max_duration`` in batches (epochs times the batches of one epoch)."""
    duration = state.max_duration
    if duration is None:
        raise ShearError('the pruning callbacks need max_duration')
    if duration.unit == TimeUnit.BATCH:
        return int(duration.value)
    if duration.unit == TimeUnit.EPOCH and state.dataloader_len is not None:
        return int(duration.value) * int(state.dataloader_len)
    raise ShearError(f'max_duration {duration}: the pruning callbacks need it in batches (ba) or epochs')


def packed(value: Any) -> bytes:
    """``value`` serialised as one bytes leaf (``torch.save``).

    A sharded (``torch.distributed.checkpoint``) load fills the state dict that the callback
    returns *before* fit start, when its optimizer does not exist yet; a nested dict there has
    other keys than the saved one ("Missing key in checkpoint state_dict"). One bytes leaf has
    the same key in both.
    """
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def unpacked(state: dict[str, Any]) -> dict[str, Any]:
    """The callback state with its ``packed`` part merged back (plain states pass through)."""
    blob = state.get('packed')
    if not isinstance(blob, (bytes, bytearray)):
        return state
    return {**{k: v for k, v in state.items() if k != 'packed'},
            **torch.load(io.BytesIO(bytes(blob)), map_location='cpu', weights_only=False)}
