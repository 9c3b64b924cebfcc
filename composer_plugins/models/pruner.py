"""The pruning state of a model: L0 masks plus Lagrange multipliers, as one module.

It is one FSDP unit, and everything that reads ``log_alpha`` or the multipliers
happens inside its ``forward`` (FSDP2 parameters are DTensors outside it). It holds
parameters only: how they learn (optimizers, schedules, initialisation, the target ramp)
belongs to the ``mask_learning`` and ``lagrangian`` callbacks.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional

import torch
from torch import nn

from composer_plugins.errors import ShearError
from composer_plugins.pruning.lagrangian import LagrangianMultipliers
from composer_plugins.pruning.masks import (
    L0Masks,
    expected_params_from_probs,
    expected_row_sparsity_from_probs,
    expected_sparsity_from_probs,
)
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

    ``forward(step, targets, rank, microbatch)`` returns sampled masks in training mode and
    deterministic ones in eval mode (exact target counts, or with ``eval_at='expected'`` the
    rounded expected count of every row), plus the Lagrangian term
    ``sum_m mean_r [lambda1_m (s_{m,r} - t_m) + lambda2_m (s_{m,r} - t_m)^2]`` over the rows
    ``r`` of each mask (:class:`~composer_plugins.pruning.lagrangian.LagrangianMultipliers`)
    for the given targets ``t_m`` (the final ones when ``targets`` is None).
    """

    def __init__(
        self,
        source: ModelShape,
        target: ModelShape,
        mask_types: list[str],
        source_name: str = '',
        sample_seed: int = 0,
        eval_at: str = 'target',
    ) -> None:
        super().__init__()
        self.source_name = source_name
        self.sample_seed = sample_seed
        self.eval_at = eval_at
        self.mask_types = list(mask_types)
        self.l0_masks = L0Masks(source, target, mask_types)
        self.lagrangian = LagrangianMultipliers(self.l0_masks.names)

    @property
    def source(self) -> ModelShape:
        return self.l0_masks.source

    @property
    def target(self) -> ModelShape:
        return self.l0_masks.target

    def forward(self, step: int, targets: Optional[Mapping[str, float]] = None, rank: int = 0,
                microbatch: int = 0) -> PrunerOutput:
        if self.training:
            masks = self.l0_masks.sample(self._generator(step, rank, microbatch))
        else:
            masks = self.l0_masks.deterministic(self.eval_at)
        fractions = self.l0_masks.kept_fractions()  # the sparsities' probabilities (over the clamp's range)
        target = dict(targets) if targets is not None else self.l0_masks.target_sparsity()
        lagrangian, _ = self.lagrangian(expected_row_sparsity_from_probs(fractions), target)
        expected = expected_sparsity_from_probs(fractions, self.source)
        params = expected_params_from_probs(self.l0_masks.keep_probs(), self.source)
        return PrunerOutput(masks, lagrangian, expected, target, params)

    def _generator(self, step: int, rank: int, microbatch: int) -> torch.Generator:
        """The gate noise of one forward: a function of (``sample_seed``, step, rank, microbatch) only.

        Every rank and every microbatch draws its own sample, so a step averages the gradient
        estimator over ``ranks x microbatches`` samples (as the original code, which samples
        per forward with per-rank seeds), and a resumed run replays them exactly. The global
        RNG is not used: a resumed run consumes it differently (for example when it re-creates
        its dataloader iterator), which would change every later sample.
        """
        device = self.l0_masks.gates[self.l0_masks.names[0]].log_alpha.device
        generator = torch.Generator(device=device)
        generator.manual_seed(gate_noise_seed(self.sample_seed, step, rank, microbatch))
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



def gate_noise_seed(sample_seed: int, step: int, rank: int, microbatch: int) -> int:
    """A 63-bit seed that depends on all four numbers (a hash, so that nearby tuples do not share seeds)."""
    digest = hashlib.blake2b(f'{sample_seed}/{step}/{rank}/{microbatch}'.encode(), digest_size=8).digest()
    return int.from_bytes(digest, 'little') & ((1 << 63) - 1)
