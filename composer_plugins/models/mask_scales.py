"""The combined per-head and per-FFN-channel scales of a set of masks.

Shared by the mask hooks (which multiply activations by them) and the export (which
folds them into ``o_proj`` / ``down_proj``), so both compute the same thing:

* head ``h = g * Q + q`` of layer l: ``z_layer[l] * z_kv_group[l, g] * z_head[l, g, q]``
  (``head_layer`` instead of ``layer`` when the layer masks are split);
* FFN channel f of layer l: ``z_layer[l] * z_intermediate[l, f]`` (``mlp`` instead of ``layer``).

A mask that is absent counts as all ones; None means no mask touches that block at all.
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch

from composer_plugins.pruning.shapes import ModelShape


def attention_layer_mask(masks: Mapping[str, torch.Tensor]) -> Optional[torch.Tensor]:
    return masks.get('layer', masks.get('head_layer'))


def mlp_layer_mask(masks: Mapping[str, torch.Tensor]) -> Optional[torch.Tensor]:
    return masks.get('layer', masks.get('mlp'))


def head_scales(masks: Mapping[str, torch.Tensor], shape: ModelShape) -> Optional[torch.Tensor]:
    """``(L, G, Q)`` scale of every query head, or None when no mask acts on attention."""
    layer = attention_layer_mask(masks)
    if 'kv_group' not in masks and 'head' not in masks and layer is None:
        return None
    device = next(iter(masks.values())).device
    scale = torch.ones(shape.num_layers, shape.num_key_value_heads, shape.q_per_kv, device=device)
    if 'kv_group' in masks:
        scale = scale * masks['kv_group'][:, :, None]
    if 'head' in masks:
        scale = scale * masks['head']
    if layer is not None:
        scale = scale * layer[:, None, None]
    return scale


def ffn_scales(masks: Mapping[str, torch.Tensor], shape: ModelShape) -> Optional[torch.Tensor]:
    """``(L, F)`` scale of every FFN channel, or None when no mask acts on the MLP."""
    layer = mlp_layer_mask(masks)
    if 'intermediate' not in masks and layer is None:
        return None
    device = next(iter(masks.values())).device
    scale = torch.ones(shape.num_layers, shape.intermediate_size, device=device)
    if 'intermediate' in masks:
        scale = scale * masks['intermediate']
    if layer is not None:
        scale = scale * layer[:, None]
    return scale
