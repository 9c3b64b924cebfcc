"""Where the log-alphas start, and how they are put back on the target sparsity.

Two pure functions on one gate's ``log_alpha`` (``(*rows, n_units)``):

* :func:`shift_to_sparsity` -- the projection of every row onto its constraint
  ``s_r(log_alpha) = t`` along a shift ``log_alpha + c_r`` common to the row's units (one
  ``c_r`` per row; a row is what the deterministic mask keeps a fixed count of), found by
  bisection. With ``p = keep_prob = sigmoid(log_alpha - beta log(-l / r))`` (Louizos et al.
  2018, eq. 12) rescaled over the clamp's range (:func:`kept_fraction_of`), the row's expected
  sparsity ``s_r = 1 - mean_u(p)`` (paper eq. 2's ``s~``) falls as ``c_r`` grows (strictly
  until every unit is at the clamp), so the root is unique. A shift common to a row keeps the
  order of its units, so it never changes which units the deterministic mask keeps.
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

from composer_plugins.pruning.config import DEFAULT_IMPORTANCE_MARGIN
from composer_plugins.pruning.hard_concrete import LOG_ALPHA_MAX, LOG_ALPHA_MIN, kept_fraction_of

_BISECTION_STEPS = 60


def expected_gate_sparsity(log_alpha: torch.Tensor) -> torch.Tensor:
    """``1 - mean(kept_fraction(log_alpha))`` in float64 (paper eq. 2's ``s~`` of one gate, over the clamp's range)."""
    return 1.0 - kept_fraction_of(log_alpha.double()).mean()


def shift_to_sparsity(log_alpha: torch.Tensor, target_sparsity: float) -> torch.Tensor:
    """``clamp(log_alpha + c_r)`` with ``c_r`` chosen per row so that each row's expected sparsity is the target.

    Args:
        log_alpha: one gate's location parameters ``(*rows, n_units)`` (a 1-d tensor is one
            row), not modified.
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
    low = -span - base.amax(-1, keepdim=True)  # s(low) = the most a row can prune
    high = span - base.amin(-1, keepdim=True)  # s(high) = the least

    def row_sparsity(shift: torch.Tensor) -> torch.Tensor:
        return 1.0 - kept_fraction_of((base + shift).clamp(LOG_ALPHA_MIN, LOG_ALPHA_MAX)).mean(-1, keepdim=True)

    for _ in range(_BISECTION_STEPS):
        middle = 0.5 * (low + high)
        above = row_sparsity(middle) > target_sparsity
        low = torch.where(above, middle, low)
        high = torch.where(above, high, middle)
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
