"""Check that an exported model has no dead kept units.

A *dead* unit is a structure that the pruned model keeps (it costs parameters, memory and
FLOPs) but whose weights are all zero, so it computes nothing. The export must never make
one: a kept unit's mask value is folded into its weights, and
:meth:`~composer_plugins.pruning.hard_concrete.HardConcreteGate.deterministic` gives every
kept unit a value of at least
:data:`~composer_plugins.pruning.hard_concrete.KEPT_VALUE_FLOOR`. The check looks at, in
every decoder layer:

* query heads: the head's ``head_dim`` input columns of ``o_proj``;
* KV groups: the group's ``head_dim`` rows of ``k_proj`` and of ``v_proj`` (and their
  biases, when the architecture has them) -- dead when both are all zero;
* FFN channels: the channel's ``down_proj`` column, ``gate_proj`` row and ``up_proj`` row
  (any one all zero silences the channel);

and, for the whole model, hidden channels: the channel's column of the input embedding.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from transformers import PreTrainedModel

from composer_plugins.errors import ShearError
from composer_plugins.models.adapters import ArchitectureAdapter, adapter_for
from composer_plugins.pruning.shapes import ModelShape


def _all_zero_blocks(weight: torch.Tensor, block: int, dim: int) -> torch.Tensor:
    """Boolean ``(n,)``: which of the ``n`` consecutive blocks of ``block`` rows (``dim=0``) or
    columns (``dim=1``) of ``weight`` are all zero."""
    nonzero = (weight.detach() != 0).any(dim=1 - dim)
    return ~nonzero.reshape(-1, block).any(dim=1)


def _all_zero_rows(proj: nn.Linear, block: int) -> torch.Tensor:
    """Which blocks of ``block`` output rows of ``proj`` have all-zero weights and (if any) biases."""
    zero = _all_zero_blocks(proj.weight, block, dim=0)
    if getattr(proj, 'bias', None) is not None:
        zero = zero & ~(proj.bias.detach() != 0).reshape(-1, block).any(dim=1)
    return zero


def _problem(zero: torch.Tensor, what: str) -> Optional[str]:
    """``'k of n <what>'`` when some of ``zero`` are True, else None."""
    count = int(zero.sum())
    return f'{count} of {zero.numel()} {what}' if count else None


def _layer_problems(layer: nn.Module, adapter: ArchitectureAdapter, head_dim: int) -> list[str]:
    """Descriptions of the dead units of one decoder layer (empty when there are none)."""
    attn, mlp = adapter.attention(layer), adapter.mlp(layer)
    dead_kv = _all_zero_rows(attn.k_proj, head_dim) & _all_zero_rows(attn.v_proj, head_dim)
    checks = (
        (_all_zero_blocks(attn.o_proj.weight, head_dim, dim=1), 'query heads have all-zero o_proj columns'),
        (dead_kv, 'KV groups have all-zero k_proj and v_proj rows'),
        (_all_zero_blocks(mlp.down_proj.weight, 1, dim=1), 'FFN channels have all-zero down_proj columns'),
        (_all_zero_blocks(mlp.gate_proj.weight, 1, dim=0), 'FFN channels have all-zero gate_proj rows'),
        (_all_zero_blocks(mlp.up_proj.weight, 1, dim=0), 'FFN channels have all-zero up_proj rows'),
    )
    return [p for p in (_problem(zero, what) for zero, what in checks) if p is not None]


def dead_unit_problems(model: PreTrainedModel) -> list[str]:
    """Every dead kept unit of ``model``, as ``'layer i: k of n <structure> ...'`` descriptions.

    Args:
        model: a plain (exported) Llama, Mistral or Qwen2 model.

    Returns:
        One description per layer and structure with dead units; empty when there are none.

    Raises:
        ShearError: the architecture is not supported (see :func:`adapter_for`).
    """
    adapter = adapter_for(model.config)
    head_dim = ModelShape.from_hf_config(model.config).head_dim
    problems = []
    hidden = _problem(_all_zero_blocks(adapter.embed_tokens(model).weight, 1, dim=1),
                      'hidden channels have all-zero embedding columns')
    if hidden is not None:
        problems.append(f'embedding: {hidden}')
    for index, layer in enumerate(adapter.layers(model)):
        problems.extend(f'layer {index}: {p}' for p in _layer_problems(layer, adapter, head_dim))
    return problems


def check_no_dead_units(model: PreTrainedModel) -> None:
    """Raises if any kept unit of ``model`` is dead (see the module docstring).

    Args:
        model: a plain (exported) Llama, Mistral or Qwen2 model.

    Raises:
        ShearError: ``'exported model has dead kept units: layer 3: 2 of 6 query heads have
            all-zero o_proj columns; ...'``, naming every layer, structure and count.
    """
    problems = dead_unit_problems(model)
    if problems:
        raise ShearError('exported model has dead kept units: ' + '; '.join(problems))
