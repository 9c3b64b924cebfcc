"""Where the log-alphas start, and how they are put back on the target sparsity.

Two pure functions on one gate's ``log_alpha`` (``(*rows, n_units)``):

* :func:`shift_to_sparsity` -- the projection onto the constraint ``s(log_alpha) = t``
  along the common shift ``log_alpha + c`` (one ``c`` per mask), found by bisection.
  With ``p = keep_prob = sigmoid(log_alpha - beta log(-l / r))`` (Louizos et al. 2018,
  eq. 12), the expected sparsity ``s = 1 - mean(p)`` (paper eq. 2's ``s~``) falls strictly
  as ``c`` grows, so the root is unique. A common shift keeps the order of the units in
  every row, so it never changes which units the deterministic mask keeps.
* :func:`log_alpha_from_keep` -- the importance initialisation: ``+margin`` for the units a
  0/1 keep mask keeps (e.g. the one-shot masks of ``shear prune-oneshot``), ``-margin`` for
  the others, then shifted onto the target. The deterministic mask then equals the keep
  mask and the expected sparsity starts at the target.

Both clamp to ``[LOG_ALPHA_MIN, LOG_ALPHA_MAX]``, as training does; a target that the
clamp cannot reach (keep everything, say) ends at the nearest reachable sparsity.
"""
from __future__ import annotations

import math

import torch

from composer_plugins.pruning.hard_concrete import LOG_ALPHA_MAX, LOG_ALPHA_MIN, keep_prob_of

DEFAULT_IMPORTANCE_MARGIN = 5.0
"""``|log_alpha|`` of kept / pruned units before the shift: a kept unit's sample is 1 about 97 % of the time."""

_BISECTION_STEPS = 60


def expected_gate_sparsity(log_alpha: torch.Tensor) -> torch.Tensor:
    """``1 - mean(sigmoid(log_alpha - beta log(-l / r)))`` in float64 (paper eq. 2's ``s~`` of one gate)."""
    return 1.0 - keep_prob_of(log_alpha.double()).mean()


def shift_to_sparsity(log_alpha: torch.Tensor, target_sparsity: float) -> torch.Tensor:
    """``clamp(log_alpha + c)`` with ``c`` chosen so that the expected sparsity equals ``target_sparsity``.

    Args:
        log_alpha: one gate's location parameters (any shape), not modified.
        target_sparsity: ``t`` in ``[0, 1]``.

    Returns:
        The shifted, clamped tensor, in the dtype of ``log_alpha``.

    Raises:
        ValueError: ``target_sparsity`` outside ``[0, 1]`` or not finite.
    """
    if not (math.isfinite(target_sparsity) and 0.0 <= target_sparsity <= 1.0):
        raise ValueError(f'target sparsity must be in [0, 1], got {target_sparsity}')
    base = log_alpha.detach().double()
    span = LOG_ALPHA_MAX - LOG_ALPHA_MIN
    low, high = -span - float(base.max()), span - float(base.min())  # s(low) = max, s(high) = min

    def sparsity(shift: float) -> float:
        return float(expected_gate_sparsity((base + shift).clamp(LOG_ALPHA_MIN, LOG_ALPHA_MAX)))

    for _ in range(_BISECTION_STEPS):
        middle = 0.5 * (low + high)
        if sparsity(middle) > target_sparsity:
            low = middle
        else:
            high = middle
    shift = 0.5 * (low + high)
    return (base + shift).clamp(LOG_ALPHA_MIN, LOG_ALPHA_MAX).to(log_alpha.dtype)


def log_alpha_from_keep(keep: torch.Tensor, target_sparsity: float,
                        margin: float = DEFAULT_IMPORTANCE_MARGIN) -> torch.Tensor:
    """Initial ``log_alpha`` (float32) whose deterministic mask is ``keep`` and whose expected sparsity is the target.

    Args:
        keep: 0/1 (or bool) keep mask of the gate's shape, e.g. a one-shot mask.
        target_sparsity: the mask's target sparsity.
        margin: ``log_alpha`` of kept units before the shift; pruned units get ``-margin``.

    Raises:
        ValueError: ``margin`` not positive.
    """
    if not margin > 0:
        raise ValueError(f'margin must be > 0, got {margin}')
    start = torch.where(keep.bool(), torch.tensor(margin), torch.tensor(-margin)).double()
    return shift_to_sparsity(start, target_sparsity).float()
