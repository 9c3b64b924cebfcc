"""Domain-weight update rules for dynamic batch loading (paper Algorithm 1)."""
from __future__ import annotations

import numpy as np


def doremi_update(
    weights: np.ndarray, losses: np.ndarray, ref_losses: np.ndarray, clamp_gap: bool = True, smoothing: float = 0.0,
    **_: object,
) -> np.ndarray:
    """``w_i <- w_i exp(d_i) / sum_j w_j exp(d_j)`` with ``d_i = max(l_i - ref_i, 0)`` (Algorithm 1).

    Args:
        weights: current domain weights (sum to 1).
        losses: current per-domain eval loss l_i.
        ref_losses: reference loss ref_i of each domain.
        clamp_gap: clamp the gap at 0 (the paper); False lets domains below their reference
            lose weight, as the original code does.
        smoothing: c in ``(1 - c) w + c / k``, mixing in the uniform distribution.
    """
    gap = np.asarray(losses, dtype=np.float64) - np.asarray(ref_losses, dtype=np.float64)
    if clamp_gap:
        gap = np.maximum(gap, 0.0)
    logits = np.log(np.asarray(weights, dtype=np.float64)) + gap
    new = np.exp(logits - logits.max())
    new /= new.sum()
    return (1.0 - smoothing) * new + smoothing / len(new)


BOUNDED_FLOOR = 0.3
"""Rule ``bounded``'s default floor ``f``: an update never pushes a domain below ``f / k``."""


def lift_to_floor(new: np.ndarray, floors: np.ndarray) -> np.ndarray:
    """``new`` with every domain below its floor raised to it, the others scaled down proportionally to make room.

    Water-filling: with ``F`` the domains held at their floor, ``w_i = floor_i`` for ``i`` in ``F`` and
    ``w_j = new_j (1 - sum_F floor) / sum_{not F} new`` for the rest; ``F`` grows until no domain
    is below its floor. A mixture already at or above every floor is returned unchanged.

    Raises:
        ValueError: floors that add up to more than 1.
    """
    new = np.asarray(new, dtype=np.float64)
    floors = np.asarray(floors, dtype=np.float64)
    if floors.sum() > 1.0 + 1e-12:
        raise ValueError(f'floors {floors.tolist()} add up to more than 1')
    held = np.zeros(len(new), dtype=bool)
    result = new.copy()
    while True:
        low = (result < floors - 1e-15) & ~held
        if not low.any():
            return result
        held |= low
        free = new[~held].sum()
        result = np.where(held, floors, new * (1.0 - floors[held].sum()) / free if free > 0 else 0.0)


def bounded_update(
    weights: np.ndarray, losses: np.ndarray, ref_losses: np.ndarray, floor: float = BOUNDED_FLOOR, **_: object,
) -> np.ndarray:
    """``w'_i = w_i exp(g_i) / sum_j w_j exp(g_j)`` with the relative gap ``g_i = max(l_i - ref_i, 0) / ref_i``,
    then lifted to a floor (:func:`lift_to_floor`) of ``min(f / k, w_i)`` per domain.

    The paper's rule (:func:`doremi_update`) exponentiates the gap in nats, which assumes gaps of a
    few tenths, as against scaling-law references. Right after pruning the gaps are several nats,
    and three updates can move nearly all of the mixture onto one domain. Dividing by the reference
    makes the step scale-free (a domain 50 % above its reference gains a factor ``e^0.5`` per update).
    The floor is only a floor: no update takes a domain below ``f / k`` (or below its current
    weight, if that is lower already), and the domains above it make room in proportion to
    their weights. When no domain lags (every gap 0) the weights do not change, whatever they
    start from; the rule never smooths towards uniform.

    Args:
        weights, losses, ref_losses: as in :func:`doremi_update` (references must be positive).
        floor: ``f`` in ``[0, 1)``.
    """
    w = np.asarray(weights, dtype=np.float64)
    refs = np.asarray(ref_losses, dtype=np.float64)
    gap = np.maximum(np.asarray(losses, dtype=np.float64) - refs, 0.0) / refs
    logits = np.log(w) + gap
    new = np.exp(logits - logits.max())
    new /= new.sum()
    return lift_to_floor(new, np.minimum(floor / len(new), w))


def weight_entropy(weights: np.ndarray) -> float:
    """``-sum_i w_i ln w_i`` in nats (``ln k`` for a uniform mix of ``k`` domains, 0 for one domain)."""
    w = np.asarray(weights, dtype=np.float64)
    w = w[w > 0]
    return float(-(w * np.log(w)).sum())


def constant_update(weights: np.ndarray, losses: np.ndarray, ref_losses: np.ndarray, **_: object) -> np.ndarray:
    """Keep the weights (the fixed-mix baseline)."""
    return np.asarray(weights, dtype=np.float64)


RULES = {'doremi': doremi_update, 'bounded': bounded_update, 'constant': constant_update}
