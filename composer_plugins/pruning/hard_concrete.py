"""Hard concrete gates: the stochastic, differentiable L0 masks of structured pruning.

The distribution is the "hard concrete" of Louizos, Welling & Kingma 2018, *Learning
Sparse Neural Networks through L0 Regularization* (arXiv 1712.01312), which Sheared-LLaMA
(Xia et al. 2023, arXiv 2310.06694, Sec. 2.1) uses for every structured mask.

A gate holds one learnable ``log_alpha`` per prunable unit. Three views of it exist:

* :meth:`HardConcreteGate.sample` -- a training-time sample ``z`` in ``[0, 1]`` that is
  exactly 0 or 1 with positive probability and differentiable wrt ``log_alpha``
  (Louizos et al. 2018, eqs. 10 and 11 with the hard-sigmoid clip);
* :meth:`HardConcreteGate.keep_prob` -- ``P(z > 0)`` in closed form (Louizos et al. 2018,
  eq. 12), from which expected kept counts, sparsities and parameter counts are built;
* :meth:`HardConcreteGate.deterministic` -- an evaluation / export mask that keeps an
  exact number of units per row, every kept unit alive (value >= :data:`KEPT_VALUE_FLOOR`).

Clamp policy: ``log_alpha`` is *not* clamped inside these computations (a clamp there
would silently zero its gradient). The training loop calls :meth:`HardConcreteGate.clamp_`
after every optimizer step, which keeps it in ``[LOG_ALPHA_MIN, LOG_ALPHA_MAX] = [-log 100,
log 1000]``. At either end a gate is still sampled strictly inside ``(0, 1)`` now and then
(4.7 % of the time at the bottom, 0.5 % at the top), so the loss keeps a gradient on every
unit and a unit can change sides. The bottom is the original Sheared-LLaMA code's; the top
is higher than its ``log 100`` because a kept unit sampled below 1 perturbs the model being
trained: at ``log 100`` one of 24 kept layers of SmolLM2 falls below half its value in 22 %
of the steps, which cost the shipped run 2.5 nats on those steps. (Until 2026-12 the clamp
was ±10, which left units 16 log-alpha units from the decision boundary with gradients below
Adam's eps: no unit of the shipped run ever changed sides.)
"""
from __future__ import annotations

import logging
import math
import struct
from collections.abc import Sequence

import torch
from torch import nn

from composer_plugins.pruning.config import DEFAULT_INIT_DROP_PROB

log = logging.getLogger(__name__)

BETA = 2.0 / 3.0
"""Temperature beta of the concrete distribution (Louizos et al. 2018, Sec. 4)."""

LIMIT_L = -0.1
"""Lower stretch limit gamma (``l``): the concrete sample is stretched to ``(l, r)``."""

LIMIT_R = 1.1
"""Upper stretch limit zeta (``r``)."""

LOG_ALPHA_MIN = -struct.unpack('f', struct.pack('f', math.log(1e2)))[0]  # -log 100, as float32 holds it
LOG_ALPHA_MAX = struct.unpack('f', struct.pack('f', math.log(1e3)))[0]  # log 1000
"""Range that :meth:`HardConcreteGate.clamp_` keeps ``log_alpha`` in: ``[-log 100, log 1000] = [-4.605, 6.908]``.

At ``LOG_ALPHA_MIN`` ``keep_prob`` is 0.047, at ``LOG_ALPHA_MAX`` 0.9995 (see the module docstring).
"""


KEPT_VALUE_FLOOR = 0.5
"""Smallest deterministic value of a kept unit.

Rule: a kept unit has value ``max(KEPT_VALUE_FLOOR, clamp(sigmoid(log_alpha) * (r - l) + l, 0, 1))``.
The stretched sigmoid is the gate's soft value (exactly 1 once ``log_alpha >= 2.4``, as
for every unit a converged run keeps); the floor makes sure that a unit the mask keeps is
never exported as zeros (a *dead* unit: memory and FLOPs that compute nothing). The
original code's ``sigmoid(log_alpha / beta * 0.8)`` is never 0 either, but can be 1e-5.
"""

SAMPLE_EPS = 1e-6
"""The uniform noise of :meth:`HardConcreteGate.sample` is drawn from ``U(eps, 1 - eps)``."""


def log_alpha_for_drop_prob(drop_prob: float) -> float:
    """Returns ``log(1 - d) - log(d)``: the ``log_alpha`` whose unstretched concrete has mean ``1 - d``.

    Args:
        drop_prob: ``d`` in ``(0, 1)``.

    Raises:
        ValueError: if ``drop_prob`` is not strictly between 0 and 1.
    """
    if not 0.0 < drop_prob < 1.0:
        raise ValueError(f'init drop probability must be in (0, 1), got {drop_prob}')
    return math.log(1.0 - drop_prob) - math.log(drop_prob)


def keep_prob_of(log_alpha: torch.Tensor) -> torch.Tensor:
    """``P(z > 0) = sigmoid(log_alpha - beta * log(-l / r))`` (Louizos et al. 2018, eq. 12)."""
    return torch.sigmoid(log_alpha - BETA * math.log(-LIMIT_L / LIMIT_R))


KEEP_PROB_MIN = 1.0 / (1.0 + math.exp(-(LOG_ALPHA_MIN - BETA * math.log(-LIMIT_L / LIMIT_R))))
KEEP_PROB_MAX = 1.0 / (1.0 + math.exp(-(LOG_ALPHA_MAX - BETA * math.log(-LIMIT_L / LIMIT_R))))
"""``keep_prob`` at the clamp's ends: 0.047 and 0.9995 (the range a trained gate can take)."""


def kept_fraction_of(log_alpha: torch.Tensor) -> torch.Tensor:
    """``(P(z > 0) - p_min) / (p_max - p_min)``, clamped to ``[0, 1]``: the keep probability over the clamp's range.

    This is what expected sparsities count (:func:`~composer_plugins.pruning.masks.expected_row_sparsity_from_probs`).
    With the raw ``P(z > 0)`` a pruned unit at the clamp still counts 0.047 of a unit, so a mask
    keeping exactly the target's units at the clamp reads as under-pruned, and the constraint
    pushes the *kept* units down to where about a quarter of their samples fall below 1 (the
    training noise then wrecked the shipped run's loss: 9 to 12 nats on the first steps
    instead of 6.5). Rescaled, a unit at either end of the clamp counts exactly 0 or 1, so the one-shot
    masks at the clamp meet the target as they are, and a kept unit's sample falls below 1 in
    0.5 % of the steps. Differentiable wrt ``log_alpha`` inside the clamp.
    """
    return ((keep_prob_of(log_alpha) - KEEP_PROB_MIN) / (KEEP_PROB_MAX - KEEP_PROB_MIN)).clamp(0.0, 1.0)


def _as_shape(shape: Sequence[int] | int) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    if not dims or any(not isinstance(d, int) or isinstance(d, bool) or d <= 0 for d in dims):
        raise ValueError(f'gate shape must be a non-empty sequence of positive ints, got {shape!r}')
    return dims


class HardConcreteGate(nn.Module):
    """A tensor of hard concrete gates; the last dimension indexes units, the others are rows.

    Args:
        shape: ``(*rows, n_units)`` or a single int ``n_units``.
        init_drop_prob: ``d`` of the initialisation ``log_alpha = log(1 - d) - log(d)``
            (see :data:`DEFAULT_INIT_DROP_PROB`).
        init_noise_std: standard deviation of optional Gaussian noise added to the
            initial ``log_alpha`` (breaks the ties between units; 0 disables it).
        generator: random generator for that noise (for reproducible initialisation).
        device: device of ``log_alpha``.

    Attributes:
        log_alpha: the learnable location parameter, shape ``(*rows, n_units)``, float32.
    """

    def __init__(
        self,
        shape: Sequence[int] | int,
        *,
        init_drop_prob: float = DEFAULT_INIT_DROP_PROB,
        init_noise_std: float = 0.0,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if init_noise_std < 0:
            raise ValueError(f'init_noise_std must be >= 0, got {init_noise_std}')
        self.shape: tuple[int, ...] = _as_shape(shape)
        self.init_log_alpha = log_alpha_for_drop_prob(init_drop_prob)
        self.init_noise_std = float(init_noise_std)
        self.log_alpha = nn.Parameter(torch.empty(self.shape, dtype=torch.float32, device=device))
        self.reset_parameters(generator=generator)

    @property
    def n_units(self) -> int:
        """Number of units per row (the size of the last dimension)."""
        return self.shape[-1]

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """(Re)initialises ``log_alpha`` to ``log(1 - d) - log(d)`` plus optional noise."""
        with torch.no_grad():
            self.log_alpha.fill_(self.init_log_alpha)
            if self.init_noise_std > 0 and self.log_alpha.device.type != 'meta':
                noise_device = generator.device if generator is not None else self.log_alpha.device
                noise = torch.randn(self.shape, generator=generator, device=noise_device)
                self.log_alpha.add_(noise.to(self.log_alpha.device) * self.init_noise_std)
            self.clamp_()

    def clamp_(self) -> None:
        """Clamps ``log_alpha`` in place to ``[LOG_ALPHA_MIN, LOG_ALPHA_MAX]``; call after each optimizer step."""
        with torch.no_grad():
            self.log_alpha.clamp_(LOG_ALPHA_MIN, LOG_ALPHA_MAX)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draws training gates, differentiable wrt ``log_alpha`` (Louizos et al. 2018, eqs. 10-11).

        ``u ~ U(eps, 1 - eps)``, ``s = sigmoid((log u - log(1 - u) + log_alpha) / beta)``,
        ``z = min(1, max(0, s * (r - l) + l))``.

        Args:
            generator: random generator of the uniform noise (optional).

        Returns:
            ``z`` with the shape of ``log_alpha``, values in ``[0, 1]``.
        """
        log_alpha = self.log_alpha
        noise_device = generator.device if generator is not None else log_alpha.device
        u = torch.rand(self.shape, generator=generator, device=noise_device, dtype=log_alpha.dtype)
        u = (u * (1.0 - 2.0 * SAMPLE_EPS) + SAMPLE_EPS).to(log_alpha.device)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / BETA)
        return torch.clamp(s * (LIMIT_R - LIMIT_L) + LIMIT_L, 0.0, 1.0)

    def kept_fraction(self) -> torch.Tensor:
        """:func:`kept_fraction_of` of ``log_alpha``: the keep probability over the clamp's range, differentiable."""
        return kept_fraction_of(self.log_alpha)

    def keep_prob(self) -> torch.Tensor:
        """Returns ``P(z > 0) = sigmoid(log_alpha - beta * log(-l / r))`` (Louizos et al. 2018, eq. 12).

        Differentiable wrt ``log_alpha``; this is what expected counts and sparsities use.
        """
        return keep_prob_of(self.log_alpha)

    def deterministic(self, keep_per_row: int | torch.Tensor, *, binary: bool = False) -> torch.Tensor:
        """Returns an evaluation mask keeping exactly ``keep_per_row`` units in every row.

        The kept units are those with the largest ``log_alpha`` in their row; ties go to the
        lowest index. A kept unit has the value ``max(KEPT_VALUE_FLOOR, clamp(sigmoid(log_alpha)
        * (r - l) + l, 0, 1))`` (see :data:`KEPT_VALUE_FLOOR`), or exactly 1 when ``binary``;
        every other unit is exactly 0, so every kept unit is non-zero. The result never
        requires grad.

        Args:
            keep_per_row: number of units kept in each row, in ``[0, n_units]``: one int for
                every row, or an integer tensor of the rows' shape (a count per row).
            binary: give kept units the value 1 instead of their soft value.

        Raises:
            ValueError: if ``keep_per_row`` is out of range or has the wrong shape.
        """
        return deterministic_mask(self.log_alpha.detach(), keep_per_row, binary=binary)

    def extra_repr(self) -> str:
        return f'shape={self.shape}, init_log_alpha={self.init_log_alpha:.4f}, init_noise_std={self.init_noise_std}'


def deterministic_mask(log_alpha: torch.Tensor, keep_per_row: int | torch.Tensor, *,
                       binary: bool = False) -> torch.Tensor:
    """:meth:`HardConcreteGate.deterministic` of a given ``log_alpha`` tensor (``(*rows, n_units)``)."""
    n_units = log_alpha.shape[-1]
    rows = tuple(log_alpha.shape[:-1])
    if torch.is_tensor(keep_per_row):
        counts = keep_per_row.to(device=log_alpha.device, dtype=torch.long)
        if tuple(counts.shape) != rows:
            raise ValueError(f'keep_per_row has shape {tuple(counts.shape)}, expected the rows {rows}')
        low, high = int(counts.min()) if counts.numel() else 0, int(counts.max()) if counts.numel() else 0
    else:
        counts = torch.full(rows, int(keep_per_row), dtype=torch.long, device=log_alpha.device)
        low = high = int(keep_per_row)
    if not (0 <= low and high <= n_units):
        raise ValueError(f'keep_per_row must be in [0, {n_units}], got {keep_per_row}')
    with torch.no_grad():
        log_alpha = log_alpha.detach()
        order = torch.sort(log_alpha, dim=-1, descending=True, stable=True).indices
        rank = torch.empty_like(order)
        rank.scatter_(-1, order, torch.arange(n_units, device=order.device).expand_as(order).contiguous())
        keep = rank < counts.unsqueeze(-1)
        if binary:
            values = torch.ones_like(log_alpha)
        else:
            soft = torch.clamp(torch.sigmoid(log_alpha) * (LIMIT_R - LIMIT_L) + LIMIT_L, 0.0, 1.0)
            values = torch.clamp(soft, min=KEPT_VALUE_FLOOR)
        return torch.where(keep, values, torch.zeros_like(values))
