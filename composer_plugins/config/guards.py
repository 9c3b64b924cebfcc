"""Typed arguments of the always-on ``finite_guard`` callback (no torch import, checked at config load)."""
from __future__ import annotations

from dataclasses import dataclass

from composer_plugins.errors import ConfigError


@dataclass
class FiniteGuardConfig:
    """``callbacks.finite_guard``: what a non-finite training loss does.

    Attributes:
        max_nonfinite_batches: how many batches in a row may have a non-finite loss before the
            run stops; each such batch is skipped (no weight, mask or multiplier moves). 0, the
            default, stops at the first one.
    """
    max_nonfinite_batches: int = 0

    def validate(self, path: str) -> None:
        if self.max_nonfinite_batches < 0:
            raise ConfigError(f'{path}.max_nonfinite_batches: got {self.max_nonfinite_batches}; '
                              'expected 0 (stop at the first non-finite loss) or a positive count')
