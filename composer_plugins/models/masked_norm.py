"""RMSNorm that normalises over the kept hidden channels only.

With a hidden mask z_h, the residual stream is zero on pruned channels, so
``mean(x^2)`` over all H channels underestimates the variance the exported model
(with H' kept channels) computes. We use::

    rms(x) = sqrt(sum_i x_i^2 / H' + eps),   H' = #{i : z_h[i] > 0}

which makes the masked model equal to the exported one exactly.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn


class MaskedRMSNorm(nn.Module):
    """Drop-in replacement of an HF ``*RMSNorm`` (same ``weight`` parameter name).

    Args:
        norm: the HF norm to replace; its ``weight`` Parameter is reused.
        kept_channels: returns the current number of kept hidden channels, or ``None``
            when no hidden mask is active (plain RMSNorm).
    """

    def __init__(self, norm: nn.Module, kept_channels: Callable[[], Optional[torch.Tensor]]) -> None:
        super().__init__()
        self.weight = norm.weight
        self.variance_epsilon = getattr(norm, 'variance_epsilon', getattr(norm, 'eps', 1e-6))
        self._kept_channels = kept_channels

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        x = hidden_states.to(torch.float32)
        kept = self._kept_channels()
        if kept is None:
            variance = x.pow(2).mean(-1, keepdim=True)
        else:
            variance = x.pow(2).sum(-1, keepdim=True) / kept.to(torch.float32)
        x = x * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * x.to(input_dtype)

    def extra_repr(self) -> str:
        return f'{tuple(self.weight.shape)}, eps={self.variance_epsilon}'
