"""The set of structured L0 masks of one model, their expected sparsities and parameter counts.

Sheared-LLaMA (Xia et al. 2023, arXiv 2310.06694, Sec. 2.1, "Targeted structured pruning")
learns hard concrete masks over layers, heads, FFN channels and hidden channels; the mask
names and shapes are those of :func:`~composer_plugins.pruning.shapes.mask_shapes`.

``layer`` and the pair ``head_layer`` + ``mlp`` are mutually exclusive. For multi-head
attention (``Q == 1``) the ``head`` mask does not exist: a request for ``head`` is served
by ``kv_group`` (each KV group is then exactly one query head).

Expected counts treat gates as independent, so ``E[1(z_a > 0) 1(z_b > 0)] = p_a p_b`` with
``p = keep_prob`` (Louizos et al. 2018, eq. 12); these give the expected sparsities that the
Lagrangian (paper eq. 2 / eq. 3) drives to the target. The Lagrangian acts on each *row*'s
expected sparsity (:func:`expected_row_sparsity_from_probs`), because the deterministic
mask keeps the target count in every row: heads, KV groups and FFN channels per layer.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from composer_plugins.errors import ConfigError
from composer_plugins.pruning.config import DEFAULT_INIT_DROP_PROB
from composer_plugins.pruning.hard_concrete import HardConcreteGate, deterministic_mask, kept_fraction_of
from composer_plugins.pruning.lagrangian import target_at_step
from composer_plugins.pruning.shapes import (
    HEAD,
    HEAD_LAYER,
    HIDDEN,
    INTERMEDIATE,
    KV_GROUP,
    LAYER,
    MASK_TYPES,
    MLP,
    ModelShape,
    mask_shapes,
    validate_target,
)

log = logging.getLogger(__name__)

BINARY_DETERMINISTIC: frozenset[str] = frozenset({HIDDEN})
"""Masks whose kept units have deterministic value exactly 1 (so tied embeddings export exactly)."""


@dataclass(frozen=True)
class MaskSpec:
    """One mask: its name, gate shape ``(*rows, n_units)`` and the units kept per row at the target."""

    name: str
    shape: tuple[int, ...]
    keep_per_row: int


def default_mask_types(source: ModelShape) -> list[str]:
    """Every structure the source has: ``head`` only with grouped-query attention."""
    types = [LAYER, KV_GROUP, HEAD, INTERMEDIATE, HIDDEN]
    return [t for t in types if t != HEAD or source.q_per_kv > 1]


def build_mask_specs(source: ModelShape, target: ModelShape, mask_types: Sequence[str]) -> list[MaskSpec]:
    """Derives the masks and their per-row keep counts that prune ``source`` to ``target``.

    Keep counts: ``layer`` / ``head_layer`` / ``mlp`` -> target layers, ``kv_group`` ->
    target KV heads, ``head`` -> target ``q_per_kv``, ``intermediate`` -> target FFN width,
    ``hidden`` -> target hidden width. ``head`` needs grouped-query attention (an MHA
    source has no query heads inside a group to prune; its heads are ``kv_group``).

    Args:
        source: shape of the model being pruned.
        target: shape to reach (checked with :func:`validate_target`).
        mask_types: requested mask names (see :data:`MASK_TYPES`).

    Returns:
        The specs in canonical order.

    Raises:
        ValueError: for an unknown or repeated mask type, ``layer`` combined with
            ``head_layer`` / ``mlp``, only one of ``head_layer`` / ``mlp``, or a target
            that shrinks a dimension no requested mask can prune.
    """
    validate_target(source, target)
    requested = list(mask_types)
    unknown = sorted(set(requested) - set(MASK_TYPES))
    if unknown:
        raise ConfigError(f'unknown mask type(s) {unknown}; expected a subset of {list(MASK_TYPES)}')
    repeated = sorted({m for m in requested if requested.count(m) > 1})
    if repeated:
        raise ConfigError(f'mask type(s) {repeated} requested more than once')
    types = set(requested)
    if LAYER in types and types & {HEAD_LAYER, MLP}:
        raise ConfigError(f"mask type 'layer' excludes 'head_layer' and 'mlp' (requested {requested})")
    if len(types & {HEAD_LAYER, MLP}) == 1:
        raise ConfigError(f"mask types 'head_layer' and 'mlp' must be requested together (requested {requested})")
    if HEAD in types and source.q_per_kv == 1:
        raise ConfigError(
            "mask type 'head' prunes query heads inside a KV group, but this model uses multi-head attention "
            "(one query head per KV head); use 'kv_group' to prune its heads",
        )

    missing = []
    if target.num_layers < source.num_layers and not (LAYER in types or HEAD_LAYER in types):
        missing.append("num_layers needs mask 'layer' (or 'head_layer' + 'mlp')")
    if target.num_key_value_heads < source.num_key_value_heads and KV_GROUP not in types:
        missing.append("num_key_value_heads needs mask 'kv_group'")
    if target.q_per_kv < source.q_per_kv and HEAD not in types:
        missing.append("q_per_kv (query heads per KV head) needs mask 'head'")
    if target.intermediate_size < source.intermediate_size and INTERMEDIATE not in types:
        missing.append("intermediate_size needs mask 'intermediate'")
    if target.hidden_size < source.hidden_size and HIDDEN not in types:
        missing.append("hidden_size needs mask 'hidden'")
    if missing:
        raise ConfigError('the target shrinks a dimension without its mask: ' + '; '.join(missing))

    shapes, target_shapes = mask_shapes(source), mask_shapes(target)
    specs = [MaskSpec(name, shapes[name], target_shapes[name][-1]) for name in MASK_TYPES if name in types]
    for spec in specs:
        if spec.keep_per_row == spec.shape[-1]:
            log.info("mask '%s' keeps every unit at the target; it is learned but prunes nothing", spec.name)
    return specs


@dataclass(frozen=True)
class _ExpectedCounts:
    """Per-layer expected counts (shape ``(L,)``) and the expected hidden width (0-dim)."""

    attn_layer: torch.Tensor  # a_l: probability that layer l's attention block is kept
    mlp_layer: torch.Tensor  # m_l: probability that layer l's MLP block is kept
    kv_groups: torch.Tensor  # sum_g p_kv[l, g]
    q_heads: torch.Tensor  # sum_g p_kv[l, g] * sum_h p_head[l, g, h]
    ffn: torch.Tensor  # sum_f p_int[l, f]
    hidden: torch.Tensor  # sum p_hidden


def _expected_counts(probs: Mapping[str, torch.Tensor], shape: ModelShape, dtype: torch.dtype) -> _ExpectedCounts:
    """Expected kept units given keep probabilities; a missing mask counts as probability 1."""
    unknown = sorted(set(probs) - set(MASK_TYPES))
    if unknown:
        raise ValueError(f'unknown mask name(s) {unknown} in probabilities')
    ref = next(iter(probs.values()), None)
    device = ref.device if ref is not None else None
    sizes = mask_shapes(shape)

    def get(name: str) -> torch.Tensor:
        size = sizes[name]
        if name not in probs:
            return torch.ones(size, dtype=dtype, device=device)
        p = probs[name]
        if tuple(p.shape) != size:
            raise ValueError(f"probabilities of mask '{name}' have shape {tuple(p.shape)}, expected {size}")
        return p.to(dtype)

    layer = get(LAYER) if LAYER in probs else None
    attn_layer = layer if layer is not None else get(HEAD_LAYER)
    mlp_layer = layer if layer is not None else get(MLP)
    p_kv = get(KV_GROUP)
    p_head = get(HEAD)
    return _ExpectedCounts(
        attn_layer=attn_layer,
        mlp_layer=mlp_layer,
        kv_groups=p_kv.sum(-1),
        q_heads=(p_kv * p_head.sum(-1)).sum(-1),
        ffn=get(INTERMEDIATE).sum(-1),
        hidden=get(HIDDEN).sum(),
    )


def expected_sparsity_from_probs(probs: Mapping[str, torch.Tensor], shape: ModelShape) -> dict[str, torch.Tensor]:
    """Expected sparsity of every mask in ``probs``, each over its own gates (paper eq. 2).

    ``s_m = 1 - mean(p_m)``: the expected fraction of the mask's units that are pruned,
    e.g. ``1 - E[kept layers] / L`` or ``1 - sum p_int / (L F)``. As in the paper, each
    constraint acts on one structure only; the interactions between structures enter the
    expected parameter count (:func:`expected_params_from_probs`), not the constraints.

    Args:
        probs: keep probabilities by mask name (e.g. :meth:`L0Masks.keep_probs`).
        shape: the source shape the masks were built for (checked against the mask shapes).

    Returns:
        0-dim tensors in the dtype of the probabilities, differentiable wrt them.
    """
    ref = next(iter(probs.values()), None)
    dtype = ref.dtype if ref is not None else torch.float32
    _expected_counts(probs, shape, dtype)  # validates names and shapes
    return {name: 1.0 - probs[name].to(dtype).mean() for name in MASK_TYPES if name in probs}


def expected_row_sparsity_from_probs(probs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Expected sparsity of every *row* of every mask: ``s_{m,r} = 1 - mean_u p_{m,r,u}``.

    A row is what the deterministic mask keeps a fixed count of (:meth:`L0Masks.deterministic`):
    one layer's KV groups (``kv_group``, rows ``(L,)``), one group's query heads (``head``,
    rows ``(L, G)``), one layer's FFN channels (``intermediate``, rows ``(L,)``); ``layer``,
    ``head_layer``, ``mlp`` and ``hidden`` are one row each (0-dim results). All rows of a
    mask have the same number of units, so the mean over rows is :func:`expected_sparsity_from_probs`.
    """
    return {name: 1.0 - probs[name].mean(-1) for name in MASK_TYPES if name in probs}


def expected_params_from_probs(probs: Mapping[str, torch.Tensor], shape: ModelShape) -> torch.Tensor:
    """Expected parameter count under the masks, in float64 (exact for 0/1 probabilities).

    With ``E_h`` the expected hidden width and, per layer ``l``, ``E_q`` / ``E_kv`` / ``E_F``
    the expected query heads / KV heads / FFN channels:

    * ``embed_tokens`` and (if untied) ``lm_head``: ``V * E_h`` each;
    * attention: ``a_l * (2 hd E_h (E_q + E_kv) + [bias] hd (E_q + 2 E_kv))``;
    * MLP: ``m_l * 3 E_h E_F``;
    * norms: ``input_layernorm`` ``a_l E_h``, ``post_attention_layernorm`` ``m_l E_h``, final ``E_h``.

    Equals :func:`~composer_plugins.pruning.shapes.count_params` of the source when every
    probability is 1, and of the target for an exact target-shaped 0/1 keep pattern.
    """
    counts = _expected_counts(probs, shape, torch.float64)
    e_h, head_dim = counts.hidden, shape.head_dim
    embeddings = shape.vocab_size * e_h * (1 if shape.tie_word_embeddings else 2)
    attention = 2 * head_dim * e_h * (counts.q_heads + counts.kv_groups)
    if shape.attention_bias:
        attention = attention + head_dim * (counts.q_heads + 2 * counts.kv_groups)
    mlp = 3 * e_h * counts.ffn
    per_layer = counts.attn_layer * (attention + e_h) + counts.mlp_layer * (mlp + e_h)
    return embeddings + per_layer.sum() + e_h


def target_sparsity_for(source: ModelShape, target: ModelShape, mask_names: Sequence[str]) -> dict[str, float]:
    """Sparsity of each mask at the target shape, with the definitions of :func:`expected_sparsity_from_probs`.

    ``layer``/``head_layer``/``mlp``: ``1 - Lt/L``; ``kv_group``: ``1 - Gt/G``;
    ``head``: ``1 - Qt/Q``; ``intermediate``: ``1 - Ft/F``; ``hidden``: ``1 - Ht/H``
    (the last axis of each mask's shape, :func:`~composer_plugins.pruning.shapes.mask_shapes`).
    """
    shapes, target_shapes = mask_shapes(source), mask_shapes(target)
    return {name: 1.0 - target_shapes[name][-1] / shapes[name][-1] for name in mask_names}

class L0Masks(nn.Module):
    """All hard concrete masks that prune one ``source`` model to ``target``.

    Args:
        source: shape of the model being pruned.
        target: shape to reach.
        mask_types: requested masks (see :func:`build_mask_specs`).
        init_drop_prob: passed to every :class:`HardConcreteGate`.
        init_noise_std: passed to every :class:`HardConcreteGate`.
        generator: random generator for the initial noise.
        device: device of the gates.

    Calling the module returns :meth:`sample` (with the given generator) in training mode
    and :meth:`deterministic` in eval mode. Under FSDP2, call it (or its methods) from
    inside a wrapped module's ``forward`` so that ``log_alpha`` is unsharded. After each
    optimizer step call :meth:`clamp_`.
    """

    def __init__(
        self,
        source: ModelShape,
        target: ModelShape,
        mask_types: Sequence[str],
        *,
        init_drop_prob: float = DEFAULT_INIT_DROP_PROB,
        init_noise_std: float = 0.0,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.target = target
        self.specs: dict[str, MaskSpec] = {s.name: s for s in build_mask_specs(source, target, mask_types)}
        self.gates = nn.ModuleDict({
            name: HardConcreteGate(
                spec.shape,
                init_drop_prob=init_drop_prob,
                init_noise_std=init_noise_std,
                generator=generator,
                device=device,
            ) for name, spec in self.specs.items()
        })

    @property
    def names(self) -> list[str]:
        """Mask names, in canonical order."""
        return list(self.specs)

    def clamp_(self) -> None:
        """Clamps every ``log_alpha`` in place (see :meth:`HardConcreteGate.clamp_`)."""
        for gate in self.gates.values():
            gate.clamp_()

    def sample(self, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Training masks, one hard concrete sample per gate (Louizos et al. 2018, eqs. 10-11)."""
        return {name: gate.sample(generator) for name, gate in self.gates.items()}

    def deterministic(self, at: str = 'target',
                      log_alphas: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Evaluation / export masks with an exact number of kept units in every row.

        Args:
            at: ``target``: the target's keep count in every row (what the export ships);
                ``expected``: each row keeps ``round(sum_u p_u)`` units, the model that the
                current gates describe (the original code's ``eval_target_model: false``).
            log_alphas: the gates' ``log_alpha`` by mask name, where they are not the gates'
                own tensors (e.g. gathered from FSDP2 shards outside ``forward``).

        Policy: kept ``hidden`` channels are exactly 1 (so tied embeddings can be exported
        exactly, without folding a per-channel scale into a shared matrix); kept units of the
        other masks carry their stretched soft value, which the export folds into weights.
        """
        if at not in ('target', 'expected'):
            raise ValueError(f"at must be 'target' or 'expected', got {at!r}")
        result = {}
        for name, gate in self.gates.items():
            log_alpha = (log_alphas[name] if log_alphas is not None else gate.log_alpha).detach()
            keep: int | torch.Tensor = self.specs[name].keep_per_row
            if at == 'expected':
                keep = torch.round(kept_fraction_of(log_alpha).sum(-1)).long()
            result[name] = deterministic_mask(log_alpha, keep, binary=name in BINARY_DETERMINISTIC)
        return result

    def keep_probs(self) -> dict[str, torch.Tensor]:
        """``P(z > 0)`` of every gate (Louizos et al. 2018, eq. 12), differentiable."""
        return {name: gate.keep_prob() for name, gate in self.gates.items()}

    def kept_fractions(self) -> dict[str, torch.Tensor]:
        """The keep probabilities rescaled over the clamp's range (:func:`kept_fraction_of`), differentiable.

        Expected sparsities count these: a unit at either end of the clamp counts exactly 0 or 1.
        """
        return {name: gate.kept_fraction() for name, gate in self.gates.items()}

    def expected_sparsity(self) -> dict[str, torch.Tensor]:
        """Expected sparsity per mask (see :func:`expected_sparsity_from_probs`) of the kept fractions; 0-dim."""
        return expected_sparsity_from_probs(self.kept_fractions(), self.source)

    def expected_row_sparsity(self) -> dict[str, torch.Tensor]:
        """Expected sparsity of every row of every mask (see :func:`expected_row_sparsity_from_probs`)."""
        return expected_row_sparsity_from_probs(self.kept_fractions())

    def expected_params(self, shape: ModelShape | None = None) -> torch.Tensor:
        """Expected parameter count (see :func:`expected_params_from_probs`); defaults to the source shape."""
        return expected_params_from_probs(self.keep_probs(), shape if shape is not None else self.source)

    def target_sparsity(self, final: bool = True) -> dict[str, float]:
        """Target sparsity per mask: at the target shape if ``final``, else 0 (the dense start)."""
        targets = target_sparsity_for(self.source, self.target, self.names)
        return targets if final else {name: 0.0 for name in targets}

    def target_sparsity_at(self, step: int, warmup_steps: int) -> dict[str, float]:
        """Target sparsity per mask on the linear warmup ramp (see :func:`target_at_step`)."""
        return {name: target_at_step(t, step, warmup_steps) for name, t in self.target_sparsity().items()}

    def forward(self, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """:meth:`sample` (with ``generator``) when training, :meth:`deterministic` in eval mode."""
        return self.sample(generator) if self.training else self.deterministic()
