"""What each layer of a deterministic mask snapshot keeps, and its heatmap.

:func:`layer_keep` summarises a snapshot (mask name -> tensor) per layer; :func:`draw_mask_heatmap`
draws it (rows: layers; columns: :data:`KEEP_COLUMNS`) as a matplotlib figure on the ``Agg``
backend (no display needed). The report saves that figure as a PNG
(:mod:`composer_plugins.tools.report.plots`) and the ``wandb_visuals`` callback logs it as a
W&B image (:func:`figure_to_rgb`), so both show the same picture.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from composer_plugins.errors import ShearError

KEEP_COLUMNS = ('query heads', 'kv groups', 'FFN channels')


@dataclass
class LayerKeep:
    """Per-layer kept fractions of a mask snapshot (kept = mask value > 0).

    Attributes:
        fractions: ``fractions[layer][column]`` for :data:`KEEP_COLUMNS`; a query head counts
            only when its KV group is kept too; None where the mask type is absent.
        kept_layers: indices of the layers whose ``layer`` mask is kept (all without one).
        hidden: ``(kept, total)`` hidden channels, or None without a ``hidden`` mask.
    """

    fractions: list[list[Optional[float]]]
    kept_layers: list[int]
    hidden: Optional[tuple[int, int]]

    @property
    def num_layers(self) -> int:
        return len(self.fractions)


def layer_keep(masks: Mapping[str, Any]) -> LayerKeep:
    """Summarise a mask snapshot per layer (see :class:`LayerKeep`).

    Raises:
        ShearError: no per-layer mask in the snapshot.
    """
    kv = masks.get('kv_group')
    head = masks.get('head')
    ffn = masks.get('intermediate')
    layer = masks.get('layer')
    per_layer = [m for m in (layer, kv, head, ffn) if m is not None]
    if not per_layer:
        raise ShearError(f'mask snapshot has no per-layer mask (got {sorted(masks)})')
    num_layers = int(per_layer[0].shape[0])
    kv_kept = (kv > 0) if kv is not None else None
    queries = None
    if head is not None:
        queries = head > 0
        if kv_kept is not None:
            queries = queries & kv_kept.unsqueeze(-1)
    elif kv_kept is not None:
        queries = kv_kept
    columns = [queries, kv_kept, (ffn > 0) if ffn is not None else None]
    fractions = [
        [None if col is None else float(col[i].float().mean()) for col in columns]
        for i in range(num_layers)
    ]
    kept_layers = list(range(num_layers)) if layer is None else [i for i in range(num_layers) if layer[i] > 0]
    hidden = masks.get('hidden')
    return LayerKeep(
        fractions=fractions,
        kept_layers=kept_layers,
        hidden=None if hidden is None else (int((hidden > 0).sum()), int(hidden.numel())),
    )


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the ``Agg`` backend."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def draw_mask_heatmap(keep: LayerKeep, title: str) -> Any:
    """The kept fraction of query heads, KV groups and FFN channels per layer, as a figure.

    Pruned layers are hatched and labelled ``pruned``; absent mask types are grey. The
    caller saves or converts the figure and closes it.
    """
    import numpy as np

    data = np.array([[np.nan if v is None else v for v in row] for row in keep.fractions], dtype=float)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 1.2 + 0.45 * keep.num_layers))
    cmap = plt.get_cmap('viridis').with_extremes(bad='lightgrey')
    image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=0.0, vmax=1.0, aspect='auto')
    for layer in range(keep.num_layers):
        for col in range(len(KEEP_COLUMNS)):
            value = data[layer, col]
            text = 'n/a' if np.isnan(value) else f'{value:.2f}'
            ax.text(col, layer, text, ha='center', va='center', fontsize=8,
                    color='white' if not np.isnan(value) and value < 0.6 else 'black')
        if layer not in keep.kept_layers:
            ax.add_patch(plt.Rectangle((-0.5, layer - 0.5), len(KEEP_COLUMNS), 1, fill=False,
                                       hatch='xx', edgecolor='red', linewidth=1.5))
    ax.set_xticks(range(len(KEEP_COLUMNS)), KEEP_COLUMNS)
    ax.set_yticks(range(keep.num_layers),
                  [f'layer {i}' + ('' if i in keep.kept_layers else ' (pruned)') for i in range(keep.num_layers)])
    hidden = '' if keep.hidden is None else f', hidden {keep.hidden[0]}/{keep.hidden[1]}'
    ax.set_title(f'{title}{hidden}', fontsize=9)
    fig.colorbar(image, ax=ax, label='kept fraction')
    fig.tight_layout()
    return fig


def figure_to_rgb(fig: Any, dpi: int = 80) -> Any:
    """The figure as an ``(H, W, 3)`` uint8 array (channels last), then closed."""
    import numpy as np

    fig.set_dpi(dpi)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    pyplot().close(fig)
    return rgb
