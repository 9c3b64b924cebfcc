"""Domain-weight update rules for dynamic batch loading (paper Algorithm 1)."""
from __future__ import annotations

import numpy as np


def doremi_update(
    weights: np.ndarray, losses: np.ndarray, ref_losses: np.ndarray, clamp_gap: bool = True, smoothing: float = 0.0,
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


def constant_update(weights: np.ndarray, losses: np.ndarray, ref_losses: np.ndarray, **_: object) -> np.ndarray:
    """Keep the weights (the fixed-mix baseline)."""
    return np.asarray(weights, dtype=np.float64)


RULES = {'doremi': doremi_update, 'constant': constant_update}
