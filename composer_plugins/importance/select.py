"""Binary masks of an exact target shape from importance scores: keep the top-k of every structure.

The masks have the names and shapes of :class:`~composer_plugins.pruning.masks.L0Masks`
(``layer``, ``kv_group``, ``head``, ``intermediate``, ``hidden``), so the mask hooks apply
them and :func:`~composer_plugins.models.export.export_pruned_model` exports them exactly
as it does learned masks. Only the dimensions that shrink get a mask.
"""
from __future__ import annotations

import torch

from composer_plugins.importance.scores import Importance
from composer_plugins.pruning.shapes import ModelShape, validate_target


def top_k_mask(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """1.0 at the ``keep`` largest scores of every row (last dimension), else 0.0; ties go to lower indices."""
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :keep]
    return torch.zeros_like(scores, dtype=torch.float32).scatter_(-1, order, 1.0)


def random_scores(source: ModelShape, generator: torch.Generator) -> Importance:
    """Uniform random scores: :func:`select_masks` of them is a random mask of the target shape (a baseline)."""
    L, G, Q = source.num_layers, source.num_key_value_heads, source.q_per_kv

    def draw(*size: int) -> torch.Tensor:
        return torch.rand(*size, generator=generator)

    return Importance(layer=draw(L), head=draw(L, G, Q), intermediate=draw(L, source.intermediate_size),
                      hidden=draw(source.hidden_size), tokens=0)


def select_masks(importance: Importance, source: ModelShape, target: ModelShape) -> dict[str, torch.Tensor]:
    """The 0/1 masks that keep the most important units, exactly ``target``'s counts per row.

    KV groups are ranked by the sum of their query heads' scores; inside each kept group
    the ``target.q_per_kv`` best query heads stay (the same count in every group, as GQA
    requires).

    Raises:
        ConfigError: ``target`` is not reachable from ``source`` (see ``validate_target``).
    """
    validate_target(source, target)
    masks: dict[str, torch.Tensor] = {}
    if target.num_layers < source.num_layers:
        masks['layer'] = top_k_mask(importance.layer, target.num_layers)
    if target.num_key_value_heads < source.num_key_value_heads:
        masks['kv_group'] = top_k_mask(importance.kv_group, target.num_key_value_heads)
    if target.q_per_kv < source.q_per_kv:
        masks['head'] = top_k_mask(importance.head, target.q_per_kv)
    if target.intermediate_size < source.intermediate_size:
        masks['intermediate'] = top_k_mask(importance.intermediate, target.intermediate_size)
    if target.hidden_size < source.hidden_size:
        masks['hidden'] = top_k_mask(importance.hidden, target.hidden_size)
    return masks
