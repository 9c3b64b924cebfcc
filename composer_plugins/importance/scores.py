"""Activation-based importance of every prunable structure, from forward passes on calibration rows.

One pass of the unmodified source model over the calibration rows, with hooks, gives
(``N`` = number of calibration tokens, ``x`` activations of one token):

* query head ``h`` of layer ``l`` (input of ``o_proj``, the head's attention output
  ``a_{l,h}``): ``I_head[l, h] = (1/N) Σ_tokens ||a_{l,h}||₂`` (Minitron, Muralidharan et
  al. 2024, eq. 2, with the mean over tokens);
* KV group ``g``: the sum of its query heads' importance;
* FFN channel ``f`` (input of ``down_proj``, ``silu(gate) * up``):
  ``I_ffn[l, f] = (1/N) Σ_tokens |x_f|`` (Minitron eq. 3);
* hidden channel ``c`` (outputs of every RMSNorm, the two per layer and the final one):
  ``I_hidden[c] = (1/N) Σ_norms Σ_tokens |n_c|`` (Minitron eq. 4);
* layer ``l`` (its effect on the residual stream, ShortGPT's Block Influence, Men et al.
  2024, eq. 1): ``BI_l = 1 − (1/N) Σ_tokens cos(h_l, h_{l+1})`` for the hidden state
  entering and leaving the layer.

Every structure is scored on the full model, in the same pass.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel

from composer_plugins.models.adapters import adapter_for
from composer_plugins.pruning.shapes import ModelShape

log = logging.getLogger(__name__)


@dataclass
class Importance:
    """Importance scores of one source model (higher = keep).

    Attributes:
        layer: ``(L,)`` Block Influence.
        head: ``(L, G, Q)`` per query head (head ``h = g * Q + q``).
        intermediate: ``(L, F)`` per FFN channel.
        hidden: ``(H,)`` per residual-stream channel.
        tokens: calibration tokens the scores average over.
    """
    layer: torch.Tensor
    head: torch.Tensor
    intermediate: torch.Tensor
    hidden: torch.Tensor
    tokens: int

    @property
    def kv_group(self) -> torch.Tensor:
        """``(L, G)``: the sum of each group's query-head scores."""
        return self.head.sum(-1)


class _Accumulator:
    """Forward hooks that add up the activation statistics of :class:`Importance`."""

    def __init__(self, model: PreTrainedModel, shape: ModelShape) -> None:
        self.shape = shape
        L, H = shape.num_layers, shape.hidden_size
        self.head = torch.zeros(L, shape.num_attention_heads, dtype=torch.float64)
        self.intermediate = torch.zeros(L, shape.intermediate_size, dtype=torch.float64)
        self.hidden = torch.zeros(H, dtype=torch.float64)
        self.layer = torch.zeros(L, dtype=torch.float64)
        self.tokens = 0
        self.handles: list[Any] = []
        adapter = adapter_for(model.config)
        for index, layer in enumerate(adapter.layers(model)):
            self.handles.append(adapter.attention(layer).o_proj.register_forward_pre_hook(self._heads(index)))
            self.handles.append(adapter.mlp(layer).down_proj.register_forward_pre_hook(self._channels(index)))
            for norm_name in adapter.norms(layer):
                self.handles.append(getattr(layer, norm_name).register_forward_hook(self._norm_output))
            self.handles.append(layer.register_forward_hook(self._block_influence(index), with_kwargs=True))
        self.handles.append(adapter.final_norm(model).register_forward_hook(self._norm_output))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def _heads(self, index: int):
        def hook(module: nn.Module, args: tuple) -> None:
            x = args[0].detach().float()
            per_head = x.reshape(*x.shape[:-1], self.shape.num_attention_heads, self.shape.head_dim)
            self.head[index] += per_head.norm(dim=-1).reshape(-1, self.shape.num_attention_heads).sum(0).double()
        return hook

    def _channels(self, index: int):
        def hook(module: nn.Module, args: tuple) -> None:
            x = args[0].detach().float()
            self.intermediate[index] += x.abs().reshape(-1, x.shape[-1]).sum(0).double()
        return hook

    def _norm_output(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        out = output.detach().float()
        self.hidden += out.abs().reshape(-1, out.shape[-1]).sum(0).double()

    def _block_influence(self, index: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            before = (args[0] if args else kwargs['hidden_states']).detach().float()
            after = (output[0] if isinstance(output, tuple) else output).detach().float()
            cos = torch.nn.functional.cosine_similarity(before, after, dim=-1)
            self.layer[index] += (1.0 - cos).sum().double()
        return hook

    def result(self) -> Importance:
        s, n = self.shape, max(self.tokens, 1)
        return Importance(
            layer=(self.layer / n).float(),
            head=(self.head / n).float().reshape(s.num_layers, s.num_key_value_heads, s.q_per_kv),
            intermediate=(self.intermediate / n).float(),
            hidden=(self.hidden / n).float(),
            tokens=self.tokens,
        )


def measure_importance(model: PreTrainedModel, rows: Sequence[np.ndarray], batch_size: int = 4) -> Importance:
    """Score every structure of ``model`` on the calibration ``rows`` (equal-length token rows).

    The model runs in eval mode, without gradients, on its current device.
    """
    shape = ModelShape.from_hf_config(model.config)
    device = next(model.parameters()).device
    accumulator = _Accumulator(model, shape)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(rows), batch_size):
                ids = torch.from_numpy(np.stack(rows[start:start + batch_size])).long().to(device)
                model(input_ids=ids, use_cache=False)
                accumulator.tokens += ids.numel()
    finally:
        accumulator.remove()
        model.train(was_training)
    log.info('Measured importance on %d calibration tokens (%d rows)', accumulator.tokens, len(rows))
    return accumulator.result()
