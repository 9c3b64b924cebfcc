"""A human-readable summary of deterministic masks: what each layer keeps."""
from __future__ import annotations

from typing import Mapping

import torch

from composer_plugins.models.mask_scales import attention_layer_mask
from composer_plugins.pruning.shapes import ModelShape


def summarize_masks(masks: Mapping[str, torch.Tensor], source: ModelShape, target: ModelShape) -> str:
    """One line per source layer (kept or pruned, kv groups, query heads, FFN channels)."""
    layer = attention_layer_mask(masks)
    lines = [
        f'source: {source.num_layers} layers, {source.num_attention_heads} heads / {source.num_key_value_heads} kv, '
        f'hidden {source.hidden_size}, ffn {source.intermediate_size}',
        f'target: {target.num_layers} layers, {target.num_attention_heads} heads / {target.num_key_value_heads} kv, '
        f'hidden {target.hidden_size}, ffn {target.intermediate_size}',
    ]
    if 'hidden' in masks:
        lines.append(f'hidden channels kept: {int((masks["hidden"] > 0).sum())} / {source.hidden_size}')
    for index in range(source.num_layers):
        if layer is not None and float(layer[index]) <= 0:
            lines.append(f'layer {index:3d}: pruned')
            continue
        parts = [f'layer {index:3d}: kept']
        if 'kv_group' in masks:
            groups = (masks['kv_group'][index] > 0).nonzero().flatten().tolist()
            parts.append(f'kv groups {groups}')
        if 'head' in masks:
            kept = masks['head'][index] > 0
            if 'kv_group' in masks:
                kept = kept & (masks['kv_group'][index] > 0)[:, None]
            heads = int(kept.sum())
            parts.append(f'query heads {heads}/{source.num_attention_heads}')
        if 'intermediate' in masks:
            parts.append(f'ffn {int((masks["intermediate"][index] > 0).sum())}/{source.intermediate_size}')
        lines.append(', '.join(parts))
    return '\n'.join(lines) + '\n'
