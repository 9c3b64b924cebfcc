"""Lagrangian sparsity constraint of targeted structured pruning.

Sheared-LLaMA (Xia et al. 2023, arXiv 2310.06694) enforces the target shape through a
Lagrangian term per mask (paper eq. 2), added to the language-modelling loss in the joint
min-max objective (paper eq. 3)::

    L~ = lambda_1 (s~ - t) + lambda_2 (s~ - t)^2

where ``s~`` is the expected sparsity of the mask and ``t`` its target sparsity, ramped
linearly from 0 during a warmup (:func:`target_at_step`). Where the deterministic mask keeps
a count per row (per layer for heads, KV groups and FFN channels), the term is computed per
row ``r`` and averaged, as the original Sheared-LLaMA code does::

    L_m = (1 / R_m) sum_r [ lambda_1 (s_{m,r} - t_m) + lambda_2 (s_{m,r} - t_m)^2 ]

The linear part equals ``lambda_1 (mean_r s_{m,r} - t_m)``; the quadratic part pulls *every*
row to the target, so a mask cannot meet its constraint with one layer keeping everything
and another nothing (which the export, keeping the target count per row, would not ship).

The masks' ``log_alpha`` and the model weights *minimise* the objective, the multipliers
*maximise* it: put the multipliers in their own optimizer parameter group with
``maximize=True`` (and no weight decay), e.g.
``torch.optim.AdamW([{'params': weights}, {'params': lambdas, 'maximize': True, 'weight_decay': 0.0}])``.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import torch
from torch import nn

log = logging.getLogger(__name__)


def target_at_step(final_target: float, step: int, warmup_steps: int, start: float = 0.0) -> float:
    """Target sparsity at ``step``: a linear ramp from ``start`` to ``final_target`` over ``warmup_steps``.

    ``t(n) = start + (final - start) * min(n / warmup, 1)``; the paper ramps from 0, an
    importance-initialised run from its initial expected sparsity.

    Args:
        final_target: target sparsity reached at the end of the warmup.
        step: current optimizer step (steps before 0 count as 0).
        warmup_steps: length of the ramp; 0 means the final target from the start.
        start: target sparsity at step 0.

    Raises:
        ValueError: if ``warmup_steps`` is negative.
    """
    if warmup_steps < 0:
        raise ValueError(f'warmup_steps must be >= 0, got {warmup_steps}')
    if warmup_steps == 0 or step >= warmup_steps:
        return float(final_target)
    return float(start) + (float(final_target) - float(start)) * max(step, 0) / warmup_steps


class LagrangianMultipliers(nn.Module):
    """The multipliers ``lambda_1`` and ``lambda_2`` of every mask (paper eq. 2).

    Each multiplier is a 1-element Parameter of shape ``(1,)`` (never 0-dim, which FSDP2
    cannot shard), initialised to 0. Parameters are named ``lambda_1.<mask>`` and
    ``lambda_2.<mask>``. Optimise them with ``maximize=True`` (see the module docstring).

    Args:
        mask_names: names of the masks to constrain.
        device: device of the multipliers.
    """

    def __init__(self, mask_names: Sequence[str], *, device: torch.device | str | None = None) -> None:
        super().__init__()
        names = list(mask_names)
        if len(set(names)) != len(names):
            raise ValueError(f'mask names must be unique, got {names}')
        self.names = names
        self.lambda_1 = nn.ParameterDict({n: nn.Parameter(torch.zeros(1, device=device)) for n in names})
        self.lambda_2 = nn.ParameterDict({n: nn.Parameter(torch.zeros(1, device=device)) for n in names})

    def forward(
        self,
        expected: Mapping[str, torch.Tensor],
        target: Mapping[str, float],
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Computes ``sum_m mean_r [lambda_1_m (s_{m,r} - t_m) + lambda_2_m (s_{m,r} - t_m)^2]`` (paper eq. 2 / 3).

        Args:
            expected: expected sparsity per mask: a 0-dim tensor (one row), or one value per
                row (:func:`~composer_plugins.pruning.masks.expected_row_sparsity_from_probs`).
            target: target sparsity ``t_m`` per mask.

        Returns:
            The total Lagrangian term (0-dim) and the term of each mask (0-dim each).

        Raises:
            ValueError: if ``expected`` or ``target`` lacks a mask or names an unknown one.
        """
        for label, given in (('expected', expected), ('target', target)):
            if set(given) != set(self.names):
                raise ValueError(f'{label} sparsities are for masks {sorted(given)}, '
                                 f'the multipliers for {sorted(self.names)}')
        terms: dict[str, torch.Tensor] = {}
        for name in self.names:
            gap = expected[name] - target[name]
            terms[name] = (self.lambda_1[name] * gap + self.lambda_2[name] * gap * gap).mean()
        total = sum(terms.values(), torch.zeros((), device=self._device()))
        return total, terms

    def _device(self) -> torch.device | None:
        first = next(iter(self.parameters()), None)
        return first.device if first is not None else None
