"""Export a masked model as a smaller, plain Hugging Face model ("fold and slice").

Sheared-LLaMA (Xia et al. 2023, arXiv 2310.06694, Sec. 2.1) ends targeted structured
pruning by removing the pruned structures; the result is an ordinary model of the target
shape. The export reproduces exactly the computation of
:class:`~composer_plugins.models.mask_hooks.MaskApplier` under deterministic masks:

* kept layers, KV groups, query heads, FFN channels and hidden channels are sliced out of
  every weight (q/k/v rows and Qwen2 biases, o_proj columns, gate/up rows, down_proj
  columns, and the hidden dimension of the embedding, every projection, every RMSNorm,
  the final norm and the LM head);
* the soft per-head scale ``z_layer[l] * z_kv_group[l, g] * z_head[l, g, q]`` (``head_layer``
  in place of ``layer`` when used) is folded into o_proj's input columns, and
  ``z_layer[l] * z_intermediate[l, f]`` (or ``mlp``) into down_proj's input columns;
* kept hidden channels have mask value exactly 1, so the residual stream needs no scale
  and :class:`~composer_plugins.models.masked_norm.MaskedRMSNorm` over the kept channels
  becomes a plain RMSNorm of the exported width; tied embeddings therefore stay tied.

The exported model keeps a float64, bfloat16 or float16 source's dtype (float32 otherwise); the
slices are exact and each folded product is computed in float32 (float64 for float64, so that tests
can compare the masked and exported models in float64) and rounded once. Finally
:func:`~composer_plugins.models.dead_units.check_no_dead_units` makes sure that every kept
unit of the exported model still computes something.
"""
from __future__ import annotations

import copy
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from composer_plugins.errors import ShearError
from composer_plugins.models.adapters import adapter_for
from composer_plugins.models.dead_units import check_no_dead_units
from composer_plugins.models.loading import empty_causal_lm
from composer_plugins.models.mask_scales import attention_layer_mask, ffn_scales, head_scales, mlp_layer_mask
from composer_plugins.pruning.shapes import ModelShape, mask_shapes
from data_prep.output_dirs import check_out_dir, staged_output

log = logging.getLogger(__name__)

RECORD_FILENAME = 'pruning.json'
RECORD_VERSION = 1


@dataclass(frozen=True)
class KeptLayer:
    """What one kept decoder layer keeps, in source indices (all sorted ascending).

    Attributes:
        source_layer: index of the layer in the source model.
        kv_groups: kept KV heads.
        query_heads: kept query heads ``h = g * Q + q`` (grouped by kept KV head, as HF's
            ``repeat_kv`` expects).
        intermediate: kept FFN channels.
    """

    source_layer: int
    kv_groups: list[int]
    query_heads: list[int]
    intermediate: list[int]


@dataclass(frozen=True)
class KeptStructure:
    """The kept units of a deterministic mask set, and the soft scales the export folds.

    Attributes:
        layers: per kept layer, its :class:`KeptLayer`.
        hidden: kept hidden channels.
        head_scale: ``(L, num_attention_heads)`` scale of each source query head's output.
        ffn_scale: ``(L, intermediate_size)`` scale of each source FFN channel.
    """

    layers: list[KeptLayer]
    hidden: list[int]
    head_scale: torch.Tensor
    ffn_scale: torch.Tensor


def _kept_in_rows(values: torch.Tensor, keep: int, name: str) -> torch.Tensor:
    """Indices (sorted) of the ``keep`` kept units in every row of a deterministic mask.

    Kept units are the non-zero ones, and every row must have exactly ``keep`` of them. A
    row with fewer means that some kept units have value 0: exported, they would be *dead*
    units (zero weights that cost memory and FLOPs and compute nothing), so this is an
    error. :meth:`L0Masks.deterministic` never makes such masks (every kept unit is at least
    :data:`~composer_plugins.pruning.hard_concrete.KEPT_VALUE_FLOOR`).

    Raises:
        ShearError: a row has more than ``keep`` non-zero units (not a deterministic mask
            of the target shape), or fewer (kept units with value 0: dead units).
    """
    nonzero = (values != 0).sum(-1)
    if bool((nonzero > keep).any()):
        raise ShearError(
            f"mask '{name}' keeps {nonzero.max().item()} units in a row but the target keeps {keep}; "
            'export needs deterministic masks (L0Masks.deterministic())')
    if bool((nonzero < keep).any()):
        raise ShearError(
            f"mask '{name}' has only {nonzero.min().item()} non-zero units in a row but the target keeps {keep}: "
            'kept units have value 0 and would be exported as dead units (all-zero weights); '
            'export needs deterministic masks (L0Masks.deterministic())')
    order = torch.sort(values, dim=-1, descending=True, stable=True).indices[..., :keep]
    return torch.sort(order, dim=-1).values


def _check_mask_shapes(masks: Mapping[str, torch.Tensor], source: ModelShape) -> None:
    expected = mask_shapes(source)
    for name, value in masks.items():
        if name not in expected:
            raise ShearError(f'unknown mask {name!r}; expected some of {list(expected)}')
        if tuple(value.shape) != expected[name]:
            raise ShearError(f'mask {name!r} has shape {tuple(value.shape)}, expected {expected[name]} for the source')
    if 'layer' in masks and ('head_layer' in masks or 'mlp' in masks):
        raise ShearError("masks 'layer' and 'head_layer' / 'mlp' cannot be combined")
    if ('head_layer' in masks) != ('mlp' in masks):
        raise ShearError("masks 'head_layer' and 'mlp' must come together")


_MASKS_FOR_DIM: dict[str, tuple[str, ...]] = {
    'num_layers': ('layer', 'head_layer'),
    'num_key_value_heads': ('kv_group',),
    'q_per_kv': ('head',),
    'intermediate_size': ('intermediate',),
    'hidden_size': ('hidden',),
}
"""The masks that can shrink each shape dimension."""


def kept_structure(
    masks: Mapping[str, torch.Tensor],
    source: ModelShape,
    target: ModelShape,
    dtype: torch.dtype = torch.float32,
) -> KeptStructure:
    """Reads the kept units and folded scales from deterministic masks.

    The scales are computed exactly as :meth:`MaskApplier.set_masks` computes them.

    Args:
        masks: deterministic masks by name (:meth:`L0Masks.deterministic`).
        source: shape of the masked model.
        target: shape of the exported model.
        dtype: dtype of the masks and scales (that of the export's computation).

    Returns:
        The kept structure.

    Raises:
        ShearError: inconsistent masks: bad shapes, ``head_layer`` and ``mlp`` keeping
            different layers (an HF model cannot drop only half a layer), a soft hidden
            mask, or kept counts that differ from ``target``.
    """
    masks = {name: value.detach().to('cpu', dtype) for name, value in masks.items()}
    _check_mask_shapes(masks, source)
    n_layers, n_groups, q_per_kv = source.num_layers, source.num_key_value_heads, source.q_per_kv
    problems = []
    for name, mask_names in _MASKS_FOR_DIM.items():
        src, tgt = getattr(source, name), getattr(target, name)
        if tgt != src and not any(m in masks for m in mask_names):
            problems.append(f'target {name} {tgt} != source {src} but no {" / ".join(mask_names)} mask')
    if target.head_dim != source.head_dim:
        problems.append(f'target head_dim {target.head_dim} != source head_dim {source.head_dim}')
    if problems:
        raise ShearError('cannot export: ' + '; '.join(problems))

    # Layers.
    attn_layer = attention_layer_mask(masks)
    mlp_layer = mlp_layer_mask(masks)
    if attn_layer is None:
        layers = list(range(n_layers))
    else:
        layers = _kept_in_rows(attn_layer, target.num_layers, 'layer' if 'layer' in masks else 'head_layer').tolist()
        if 'mlp' in masks:
            mlp_layers = _kept_in_rows(mlp_layer, target.num_layers, 'mlp').tolist()
            if mlp_layers != layers:
                raise ShearError(
                    f"masks 'head_layer' and 'mlp' keep different layers (attention in {layers}, MLP in "
                    f'{mlp_layers}); a Hugging Face decoder layer always has both blocks, so this cannot be '
                    "exported. Train with mask 'layer' or continue until both masks agree.")

    # Hidden channels: binary, so nothing is folded into the residual stream.
    if 'hidden' in masks:
        hidden_mask = masks['hidden']
        if not bool(((hidden_mask == 0) | (hidden_mask == 1)).all()):
            raise ShearError("the 'hidden' mask must be exactly 0 or 1 (L0Masks.deterministic() makes it so)")
        hidden = _kept_in_rows(hidden_mask, target.hidden_size, 'hidden').tolist()
        if len(hidden) != int(hidden_mask.sum()):
            raise ShearError(f"the 'hidden' mask keeps {int(hidden_mask.sum())} channels, "
                             f"the target {target.hidden_size}")
    else:
        hidden = list(range(source.hidden_size))

    # Per-head and per-channel scales, exactly those the mask hooks apply.
    head = head_scales(masks, source)
    head = torch.ones(n_layers, n_groups, q_per_kv, dtype=dtype) if head is None else head.to(dtype)
    ffn = ffn_scales(masks, source)
    ffn = torch.ones(n_layers, source.intermediate_size, dtype=dtype) if ffn is None else ffn.to(dtype)

    groups = (_kept_in_rows(masks['kv_group'], target.num_key_value_heads, 'kv_group') if 'kv_group' in masks
              else torch.arange(n_groups).expand(n_layers, n_groups))
    heads_in_group = (_kept_in_rows(masks['head'], target.q_per_kv, 'head') if 'head' in masks
                      else torch.arange(q_per_kv).expand(n_layers, n_groups, q_per_kv))
    channels = (_kept_in_rows(masks['intermediate'], target.intermediate_size, 'intermediate')
                if 'intermediate' in masks else torch.arange(source.intermediate_size).expand(n_layers, -1))
    kept_layers = []
    for index in layers:
        kept_groups = groups[index].tolist()
        query_heads = [g * q_per_kv + q for g in kept_groups for q in heads_in_group[index, g].tolist()]
        kept_layers.append(KeptLayer(index, kept_groups, query_heads, channels[index].tolist()))
    return KeptStructure(kept_layers, hidden, head.reshape(n_layers, -1), ffn)


def _head_rows(heads: Sequence[int], head_dim: int) -> torch.Tensor:
    """Row indices of ``heads`` in a ``(heads * head_dim, ...)`` projection."""
    return (torch.tensor(heads, dtype=torch.long)[:, None] * head_dim + torch.arange(head_dim)).reshape(-1)


def _exported_config(config: Any, kept: KeptStructure, source: ModelShape, target: ModelShape) -> Any:
    """A deep copy of ``config`` with only the shape fields (and what depends on layer indices) changed."""
    new = copy.deepcopy(config)
    new.num_hidden_layers = target.num_layers
    new.num_attention_heads = target.num_attention_heads
    new.num_key_value_heads = target.num_key_value_heads
    new.hidden_size = target.hidden_size
    new.intermediate_size = target.intermediate_size
    new.head_dim = source.head_dim  # no longer hidden_size // heads in general
    if getattr(config, 'use_sliding_window', False) and getattr(config, 'max_window_layers', None) is not None:
        # Qwen2: layers with index >= max_window_layers use the sliding window; keep each kept layer's kind.
        new.max_window_layers = sum(1 for layer in kept.layers if layer.source_layer < config.max_window_layers)
    return new


def export_dtype(hf_model: PreTrainedModel) -> torch.dtype:
    """The dtype the export returns: the source's for float64, bfloat16 and float16 sources, else float32.

    Products with the folded scales are computed in :func:`fold_dtype` and rounded once to this dtype.
    """
    return hf_model.dtype if hf_model.dtype in (torch.float64, torch.bfloat16, torch.float16) else torch.float32


def fold_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the scales are folded in: float64 for a float64 export, float32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class _Slicer:
    """Makes the export's tensors: a slice of a source tensor, optionally times a per-column scale.

    Slicing happens in the source's dtype (exact); a scale is multiplied in :func:`fold_dtype` and
    the product rounded once to the export's dtype. Every result is a new tensor, never a view of
    the source.
    """

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype
        self.fold = fold_dtype(dtype)

    def __call__(self, tensor: torch.Tensor, rows: Optional[torch.Tensor] = None,
                 cols: Optional[torch.Tensor] = None, col_scale: Optional[torch.Tensor] = None) -> nn.Parameter:
        value = tensor.detach()
        copied = rows is not None or cols is not None
        if rows is not None:
            value = value.index_select(0, rows.to(value.device))
        if cols is not None:
            value = value.index_select(1, cols.to(value.device))
        copied = copied or value.device.type != 'cpu'
        value = value.to('cpu')
        if col_scale is not None:
            value = (value.to(self.fold) * col_scale.to(self.fold)).to(self.dtype)
        else:
            value = value.to(self.dtype, copy=not copied)
        return nn.Parameter(value.contiguous())


def _release(module: nn.Module) -> None:
    """Frees ``module``'s parameters and buffers (moves them to the meta device)."""
    module.to('meta')


@torch.no_grad()
def export_pruned_model(
    hf_model: PreTrainedModel,
    masks: Mapping[str, torch.Tensor],
    source: ModelShape,
    target: ModelShape,
    consume_source: bool = False,
) -> PreTrainedModel:
    """Builds the pruned model: a new HF model of the same class with the target shape.

    Memory: the new model's parameters are made one tensor at a time, so the export's peak is
    the source plus the exported model. With ``consume_source`` every source layer is freed as soon as
    it is sliced (pruned layers first), and the embeddings after theirs: the peak is then about the
    source plus the exported embeddings and one layer, which is what lets ``shear export`` and the
    scale rehearsal (``benchmarks/scale_rehearsal.py``) export an 8B model on a 24 GiB machine.

    Args:
        hf_model: the source HF model (its norms may be :class:`MaskedRMSNorm` wrappers).
        masks: deterministic masks (:meth:`L0Masks.deterministic`); soft values of kept
            units are folded into o_proj / down_proj, the hidden mask must be 0/1.
        source: shape of ``hf_model``.
        target: the exported shape.
        consume_source: free ``hf_model``'s weights while exporting; it cannot be used afterwards.

    Returns:
        A CPU model in :func:`export_dtype` whose logits equal the masked model's (up to float
        rounding), with ``config`` a copy of the source's with only the shape fields changed.

    Raises:
        ShearError: the masks cannot be exported (see :func:`kept_structure`),
            ``source`` does not describe ``hf_model``, or the exported model has dead
            kept units (see :func:`~composer_plugins.models.dead_units.check_no_dead_units`).
    """
    actual = ModelShape.from_hf_config(hf_model.config)
    if actual != source:
        raise ShearError(f'the model has shape {actual}, but the masks were built for {source}')
    adapter = adapter_for(hf_model.config)
    dtype = export_dtype(hf_model)
    sliced = _Slicer(dtype)
    kept = kept_structure(masks, source, target, sliced.fold)
    config = _exported_config(hf_model.config, kept, source, target)
    config.torch_dtype = dtype
    new_model = empty_causal_lm(config, type(hf_model))

    hid = torch.tensor(kept.hidden, dtype=torch.long)
    head_dim = source.head_dim
    old_embed, old_head = adapter.embed_tokens(hf_model), adapter.lm_head(hf_model)
    old_norm = adapter.final_norm(hf_model)
    adapter.embed_tokens(new_model).weight = sliced(old_embed.weight, cols=hid)
    adapter.final_norm(new_model).weight = sliced(old_norm.weight, rows=hid)
    if source.tie_word_embeddings:
        new_model.tie_weights()
        if adapter.lm_head(new_model).weight is not adapter.embed_tokens(new_model).weight:
            raise ShearError('the exported model does not tie lm_head to embed_tokens')
    else:
        adapter.lm_head(new_model).weight = sliced(old_head.weight, cols=hid)
    old_layers, new_layers = adapter.layers(hf_model), adapter.layers(new_model)
    if consume_source:
        for module in (old_embed, old_head, old_norm):
            _release(module)
        kept_sources = {layer.source_layer for layer in kept.layers}
        for index, old_layer in enumerate(old_layers):
            if index not in kept_sources:
                _release(old_layer)

    for new_layer, layer in zip(new_layers, kept.layers):
        old_layer = old_layers[layer.source_layer]
        q_rows = _head_rows(layer.query_heads, head_dim)
        kv_rows = _head_rows(layer.kv_groups, head_dim)
        old_attn, new_attn = adapter.attention(old_layer), adapter.attention(new_layer)
        for proj, rows in (('q_proj', q_rows), ('k_proj', kv_rows), ('v_proj', kv_rows)):
            old_proj, new_proj = getattr(old_attn, proj), getattr(new_attn, proj)
            new_proj.weight = sliced(old_proj.weight, rows=rows, cols=hid)
            if adapter.qkv_bias:
                new_proj.bias = sliced(old_proj.bias, rows=rows)
        scale = kept.head_scale[layer.source_layer].repeat_interleave(head_dim)[q_rows]
        new_attn.o_proj.weight = sliced(old_attn.o_proj.weight, rows=hid, cols=q_rows, col_scale=scale)

        ffn = torch.tensor(layer.intermediate, dtype=torch.long)
        old_mlp, new_mlp = adapter.mlp(old_layer), adapter.mlp(new_layer)
        new_mlp.gate_proj.weight = sliced(old_mlp.gate_proj.weight, rows=ffn, cols=hid)
        new_mlp.up_proj.weight = sliced(old_mlp.up_proj.weight, rows=ffn, cols=hid)
        new_mlp.down_proj.weight = sliced(old_mlp.down_proj.weight, rows=hid, cols=ffn,
                                          col_scale=kept.ffn_scale[layer.source_layer][ffn])
        for norm in adapter.norms(old_layer):
            getattr(new_layer, norm).weight = sliced(getattr(old_layer, norm).weight, rows=hid)
        if consume_source:
            _release(old_layer)

    on_meta = [name for name, param in new_model.named_parameters() if param.is_meta]
    if on_meta:
        raise ShearError(f'internal error: the export left parameters unset: {on_meta[:5]}')
    exported = ModelShape.from_hf_config(new_model.config)
    if exported != target:
        raise ShearError(f'internal error: exported shape {exported} != target {target}')
    check_no_dead_units(new_model)
    new_model.eval()
    log.info('Exported %s -> %s (%d parameters, %s)', source, target,
             sum(p.numel() for p in new_model.parameters()), str(dtype).removeprefix('torch.'))
    return new_model


def pruning_record(
    masks: Mapping[str, torch.Tensor],
    source: ModelShape,
    target: ModelShape,
    source_name: str,
) -> dict[str, Any]:
    """What the export kept, as JSON-ready data (written as ``pruning.json``).

    Args:
        masks: the deterministic masks given to :func:`export_pruned_model`.
        source: the source shape.
        target: the target shape.
        source_name: where the source model came from (path, hub id or tiny name).

    Returns:
        ``{'version', 'source_model', 'source_shape', 'target_shape', 'mask_types',
        'kept_layers', 'kept_hidden', 'layers': [{'layer', 'source_layer', 'kv_groups',
        'query_heads', 'intermediate'}, ...]}``, all indices in the source model, sorted.
    """
    kept = kept_structure(masks, source, target)
    return {
        'version': RECORD_VERSION,
        'source_model': source_name,
        'source_shape': asdict(source),
        'target_shape': asdict(target),
        'mask_types': list(masks),
        'kept_layers': [layer.source_layer for layer in kept.layers],
        'kept_hidden': kept.hidden,
        'layers': [{'layer': index, **asdict(layer)} for index, layer in enumerate(kept.layers)],
    }


def save_exported(
    model: PreTrainedModel,
    tokenizer: Optional[PreTrainedTokenizerBase],
    record: Mapping[str, Any],
    out_dir: str | os.PathLike[str],
    force: bool = False,
) -> Path:
    """Writes ``model`` (safetensors), the tokenizer and ``pruning.json`` to ``out_dir`` atomically.

    Everything goes to a temporary directory next to ``out_dir``, which is then renamed
    into place (an existing ``out_dir`` is renamed aside first, then deleted).

    Args:
        model: the exported model.
        tokenizer: saved with ``save_pretrained`` when given.
        record: :func:`pruning_record`.
        out_dir: destination; must be missing or empty unless ``force``.
        force: replace a non-empty ``out_dir``.

    Returns:
        The absolute output directory.

    Raises:
        ShearError: ``out_dir`` is a file, or non-empty without ``force``.
    """
    out = Path(out_dir).expanduser().absolute()
    check_out_dir(out, force)
    with staged_output(out) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        (tmp / RECORD_FILENAME).write_text(json.dumps(record, indent=2) + '\n', encoding='utf-8')
    log.info('Wrote the pruned model to %s', out)
    return out
