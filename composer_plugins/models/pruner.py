"""The pruning state of a model: L0 masks plus Lagrange multipliers, as one module.

It is one FSDP unit, and everything that reads ``log_alpha`` or the multipliers
happens inside its ``forward`` (FSDP2 parameters are DTensors outside it). It holds
parameters only: how they learn (optimizers, schedules, initialisation, the target ramp)
belongs to the ``mask_learning`` and ``lagrangian`` callbacks.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional

import torch
from torch import nn

from composer_plugins.errors import ShearError
from composer_plugins.pruning.lagrangian import LagrangianMultipliers
from composer_plugins.pruning.masks import L0Masks
from composer_plugins.pruning.shapes import ModelShape

PRUNER_STATE_VERSION = 2
_READABLE_VERSIONS = (1, 2)  # version 1 also recorded the warm-up, now the lagrangian callback's


@dataclass
class PrunerOutput:
    """What one forward of :class:`Pruner` produces."""
    masks: dict[str, torch.Tensor]
    lagrangian: torch.Tensor
    expected_sparsity: dict[str, torch.Tensor]
    target_sparsity: dict[str, float]
    expected_params: torch.Tensor


# FSDP2 finds the tensors a module's forward returns through pytree, to hook its backward
# (the reduce-scatter of the gradients). An unregistered dataclass is one opaque leaf: the
# gradients of log_alpha and the multipliers then never reach the sharded parameters, and
# the masks do not learn. Registering it makes its tensors visible.
torch.export.register_dataclass(PrunerOutput)


class Pruner(nn.Module):
    """L0 masks (Louizos et al. 2018) with the Lagrangian constraint of paper eq. 2.

    ``forward(step, targets)`` returns sampled masks in training mode and deterministic
    ones (exact target counts) in eval mode, plus the Lagrangian term
    ``sum_m lambda1_m (s_m - t_m) + lambda2_m (s_m - t_m)^2`` for the given targets
    ``t_m`` (the final ones when ``targets`` is None).
    """

    def __init__(
        self,
        source: ModelShape,
        target: ModelShape,
        mask_types: list[str],
        source_name: str = '',
        sample_seed: int = 0,
    ) -> None:
        super().__init__()
        self.source_name = source_name
        self.sample_seed = sample_seed
        self.mask_types = list(mask_types)
        self.l0_masks = L0Masks(source, target, mask_types)
        self.lagrangian = LagrangianMultipliers(self.l0_masks.names)

    @property
    def source(self) -> ModelShape:
        return self.l0_masks.source

    @property
    def target(self) -> ModelShape:
        return self.l0_masks.target

    def forward(self, step: int, targets: Optional[Mapping[str, float]] = None) -> PrunerOutput:
        masks = self.l0_masks(self._generator(step) if self.training else None)
        expected = self.l0_masks.expected_sparsity()
        target = dict(targets) if targets is not None else self.l0_masks.target_sparsity()
        lagrangian, _ = self.lagrangian(expected, target)
        return PrunerOutput(masks, lagrangian, expected, target, self.l0_masks.expected_params())

    def _generator(self, step: int) -> torch.Generator:
        """The gate noise of ``step`` depends only on (``sample_seed``, step): resumed runs replay it.

        The global RNG is not used: a resumed run consumes it differently (for example when
        it re-creates its dataloader iterator), which would change every later sample.
        """
        device = self.l0_masks.gates[self.l0_masks.names[0]].log_alpha.device
        generator = torch.Generator(device=device)
        generator.manual_seed(self.sample_seed * 1_000_003 + step)
        return generator

    def get_extra_state(self) -> dict[str, Any]:
        """Saved with the weights, so a checkpoint alone says how to export it."""
        return {
            'version': PRUNER_STATE_VERSION,
            'source': asdict(self.source),
            'target': asdict(self.target),
            'mask_types': self.mask_types,
            'source_name': self.source_name,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if state.get('version') not in _READABLE_VERSIONS:
            raise ShearError(f'pruner state version {state.get("version")} is not one of {_READABLE_VERSIONS}')
        mismatch = [
            key for key, mine in (('source', self.source), ('target', self.target)) if state[key] != asdict(mine)
        ]
        if mismatch or state['mask_types'] != self.mask_types:
            raise ShearError(
                f'checkpoint was saved for a different pruning config ({", ".join(mismatch) or "mask_types"} differ): '
                f'saved {state}',
            )
        self.source_name = state.get('source_name', self.source_name)

