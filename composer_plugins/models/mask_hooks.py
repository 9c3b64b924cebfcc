"""Apply L0 masks to a Hugging Face model's activations through module hooks.

No model code is copied: the HF modules run unchanged and hooks scale activations
(paper §2.1, "pruning masks act on the outputs of the structures"):

* attention: the input of ``o_proj`` is scaled per query head by
  ``z_layer[l] * z_kv_group[l, g] * z_head[l, g, q]`` (head ``h = g * Q + q``, the
  order HF's ``repeat_kv`` uses);
* MLP: the input of ``down_proj`` is scaled per channel by ``z_layer[l] * z_intermediate[l, f]``;
* hidden: the outputs of ``embed_tokens``, every ``o_proj`` and every ``down_proj``
  are scaled by ``z_hidden``, and every RMSNorm normalises over the kept channels
  (:class:`MaskedRMSNorm`).

The masks of the latest forward stay in place until the next one, so activation
checkpointing recomputes exactly what the forward computed.
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch
from torch import nn
from transformers import PreTrainedModel

from composer_plugins.models.adapters import ArchitectureAdapter
from composer_plugins.models.mask_scales import ffn_scales, head_scales
from composer_plugins.models.masked_norm import MaskedRMSNorm
from composer_plugins.pruning.shapes import ModelShape


class MaskApplier:
    """Installs the hooks once; :meth:`set_masks` chooses the masks each forward uses."""

    def __init__(self, model: PreTrainedModel, adapter: ArchitectureAdapter, shape: ModelShape) -> None:
        self.shape = shape
        self.head_scale: Optional[torch.Tensor] = None  # (L, heads * head_dim)
        self.ffn_scale: Optional[torch.Tensor] = None  # (L, F)
        self.hidden: Optional[torch.Tensor] = None  # (H,)
        self.kept_hidden: Optional[torch.Tensor] = None  # () number of channels with z > 0
        self._install(model, adapter)

    # ------------------------------------------------------------------ masks
    def set_masks(self, masks: Optional[Mapping[str, torch.Tensor]]) -> None:
        """Precompute the per-layer scales of ``masks`` (names as in :class:`L0Masks`); None = no masks."""
        if masks is None:
            self.head_scale = self.ffn_scale = self.hidden = self.kept_hidden = None
            return
        s = self.shape
        head = head_scales(masks, s)
        self.head_scale = None if head is None else head.reshape(s.num_layers, -1).repeat_interleave(
            s.head_dim, dim=1,
        )
        self.ffn_scale = ffn_scales(masks, s)
        self.hidden = masks.get('hidden')
        self.kept_hidden = None if self.hidden is None else (self.hidden > 0).sum()

    # ------------------------------------------------------------------ hooks
    def _install(self, model: PreTrainedModel, adapter: ArchitectureAdapter) -> None:
        adapter.embed_tokens(model).register_forward_hook(self._scale_hidden_output)
        for index, layer in enumerate(adapter.layers(model)):
            o_proj = adapter.attention(layer).o_proj
            down_proj = adapter.mlp(layer).down_proj
            o_proj.register_forward_pre_hook(self._input_scaler('head_scale', index))
            o_proj.register_forward_hook(self._scale_hidden_output)
            down_proj.register_forward_pre_hook(self._input_scaler('ffn_scale', index))
            down_proj.register_forward_hook(self._scale_hidden_output)
            for norm_name in adapter.norms(layer):
                setattr(layer, norm_name, MaskedRMSNorm(getattr(layer, norm_name), self._kept_hidden))
        decoder = model.get_decoder()
        decoder.norm = MaskedRMSNorm(decoder.norm, self._kept_hidden)

    def _kept_hidden(self) -> Optional[torch.Tensor]:
        return self.kept_hidden

    def _scale_hidden_output(self, module: nn.Module, args: tuple, output: torch.Tensor) -> Optional[torch.Tensor]:
        if self.hidden is None:
            return None
        return output * self.hidden.to(output.dtype)

    def _input_scaler(self, attribute: str, layer_index: int):
        def hook(module: nn.Module, args: tuple) -> Optional[tuple]:
            scale = getattr(self, attribute)
            if scale is None:
                return None
            x = args[0]
            return (x * scale[layer_index].to(x.dtype), *args[1:])
        return hook

