"""One function per report figure; each writes a PNG and returns its path, or None without data.

Matplotlib runs on the ``Agg`` backend (no display needed). With several runs, curves are
overlaid: colour tells the domain / mask type, the marker tells the run, and every legend
entry starts with the run folder name.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from composer_plugins.models.mask_heatmap import draw_mask_heatmap, layer_keep, pyplot
from composer_plugins.tools.report.metrics import RunData

log = logging.getLogger(__name__)

_MARKERS = ('', 'o', 's', '^', 'v', 'D', 'x', '+')
DPI = 100


def _pyplot() -> Any:
    return pyplot()


def _label(run: RunData, what: str, runs: Sequence[RunData]) -> str:
    return what if len(runs) == 1 else f'{run.name}: {what}'


def _marker(index: int, points: int) -> dict[str, Any]:
    marker = _MARKERS[index % len(_MARKERS)]
    return {'marker': marker, 'markevery': max(1, points // 8), 'markersize': 4} if marker else {}


class _Colors:
    """A stable colour per name (domain or mask type) across all runs of a figure."""

    def __init__(self) -> None:
        self._names: dict[str, int] = {}

    def __call__(self, name: str) -> str:
        return f'C{self.index(name) % 10}'

    def index(self, name: str) -> int:
        return self._names.setdefault(name, len(self._names))


_LINE_STYLES = ((0, ()), (0, (6, 3)), (0, (1, 2)), (0, (6, 2, 1, 2)), (0, (3, 3)))
"""Solid, dashed, dotted, dash-dot, short dashes: equal curves of several names stay visible."""


def _line_style(index: int) -> dict[str, Any]:
    """The dash pattern and width of the ``index``-th name: later names thinner, so overlaps show every line."""
    return {'linestyle': _LINE_STYLES[index % len(_LINE_STYLES)], 'linewidth': max(1.0, 3.0 - 0.5 * index)}


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches='tight')  # legends placed beside a panel stay in the image
    _pyplot().close(fig)
    log.info('Wrote %s', path)
    return path


def _paired_panels(runs: Sequence[RunData], left_prefix: str, right_prefix: str) -> Optional[tuple[Any, Any, Any]]:
    """A figure of two panels: ``<left_prefix><name>`` (left) and ``<right_prefix><name>`` (right) over batches,
    one line per run and name (the names of the left keys), the same colour per name on both; None without data."""
    drawn = [(i, run, run.suffixes(left_prefix)) for i, run in enumerate(runs)]
    if not any(names for _, _, names in drawn):
        return None
    fig, (left, right) = _pyplot().subplots(1, 2, figsize=(11, 4))
    color = _Colors()
    for index, run, names in drawn:
        for name in names:
            for ax, prefix in ((left, left_prefix), (right, right_prefix)):
                steps, values = run.series(f'{prefix}{name}')
                if steps:
                    ax.plot(steps, values, color=color(name), label=_label(run, name, runs),
                            **_line_style(color.index(name)), **_marker(index, len(steps)))
    return fig, left, right


def _finish_panels(fig: Any, axes: Sequence[Any], path: Path) -> Path:
    """Grids, and one legend for the paired panels (they share their lines' labels), beside the last one
    that has lines: inside a panel, the legend covers the curves."""
    for ax in axes:
        ax.grid(alpha=0.3)
    with_lines = [ax for ax in axes if ax.lines]
    if with_lines:
        handles, labels = with_lines[0].get_legend_handles_labels()
        with_lines[-1].legend(handles, labels, fontsize='small', loc='upper left', bbox_to_anchor=(1.02, 1.0),
                              borderaxespad=0)
    return _save(fig, path)


def plot_domain_weights(runs: Sequence[RunData], path: Path) -> Optional[Path]:
    """Domain weights (``data/weight/<domain>``, left) and the loss gaps that set them (``data/gap/<domain>``,
    right) over batches, one line per run and domain."""
    panels = _paired_panels(runs, 'data/weight/', 'data/gap/')
    if panels is None:
        return None
    fig, left, right = panels
    left.set(xlabel='batch', ylabel='domain weight', title='Domain weights', ylim=(0, None))
    right.set(xlabel='batch', ylabel='eval loss - reference (nats)', title='Loss gap at each update')
    right.axhline(0.0, color='grey', linewidth=0.8)
    return _finish_panels(fig, (left, right), path)


def plot_sparsity(runs: Sequence[RunData], path: Path) -> Optional[Path]:
    """Expected (solid) vs target (dashed) sparsity over batches, one panel per mask type (masks with the same
    target would hide each other in one panel)."""
    masks = list(dict.fromkeys(mask for run in runs for mask in run.suffixes('l0/expected_sparsity/')))
    if not masks:
        return None
    columns = min(3, len(masks))
    rows = -(-len(masks) // columns)
    fig, axes = _pyplot().subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False, sharey=True)
    for ax, mask in zip(axes.flat, masks):
        for index, run in enumerate(runs):
            steps, values = run.series(f'l0/expected_sparsity/{mask}')
            if not steps:
                continue
            ax.plot(steps, values, '-', color=f'C{index % 10}', label=_label(run, 'expected', runs), linewidth=3,
                    alpha=0.5, **_marker(index, len(steps)))  # wide and pale: the target stays visible on it
            steps, values = run.series(f'l0/target_sparsity/{mask}')
            if steps:
                ax.plot(steps, values, '--', color='black', alpha=0.6, linewidth=1,
                        label=_label(run, 'target', runs))
        ax.set(title=mask, xlabel='batch', ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(masks):]:
        ax.set_visible(False)
    axes[0][0].set_ylabel('sparsity')
    axes[0][0].legend(fontsize='x-small')
    fig.suptitle('Expected (solid) vs target (dashed) sparsity per mask')
    return _save(fig, path)


def plot_changed_units(runs: Sequence[RunData], path: Path) -> Optional[Path]:
    """Units whose keep/prune decision differs from step 0's (left) and undecided gates (right), per mask.

    Masks that learn show changed units above 0; a flat 0 means the run kept its initial masks.
    """
    panels = _paired_panels(runs, 'l0/changed_units/', 'l0/decision_margin/')
    if panels is None:
        return None
    fig, left, right = panels
    left.set(xlabel='batch', ylabel='units', title='Changed keep/prune decisions since step 0')
    right.set(xlabel='batch', ylabel='share of gates', title='Undecided gates (keep prob in (0.05, 0.95))',
              ylim=(0, None))
    return _finish_panels(fig, (left, right), path)


def plot_mask_heatmap(run: RunData, path: Path) -> Optional[Path]:
    """Kept fraction of query heads, KV groups and FFN channels per layer, from the last snapshot.

    Drawn by :func:`composer_plugins.models.mask_heatmap.draw_mask_heatmap` (the image the
    ``wandb_visuals`` callback logs): pruned layers hatched and labelled ``pruned``, absent
    mask types grey.
    """
    if run.masks is None:
        return None
    fig = draw_mask_heatmap(layer_keep(run.masks), f'{run.name}: kept fraction, masks step {run.mask_step}')
    return _save(fig, path)


def plot_losses(
    runs: Sequence[RunData], path: Path, ref_losses: Optional[Mapping[str, float]] = None,
) -> Optional[Path]:
    """Training loss (left) and per-domain eval loss (right), reference losses as dashed lines."""
    train = [(i, run, run.series('loss/train/total')) for i, run in enumerate(runs)]
    evals = [(i, run, run.eval_losses()) for i, run in enumerate(runs)]
    if not any(s[0] for _, _, s in train) and not any(e for _, _, e in evals):
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for index, run, (steps, values) in train:  # logged before the batch counter moves: batch b is step b - 1
        if steps:
            left.plot(_done(steps), values, color=f'C{index % 10}', label=_label(run, 'total', runs), linewidth=1)
        lm_steps, lm_values = run.series('loss/train/lm')
        if lm_steps and lm_values != values:
            left.plot(_done(lm_steps), lm_values, ':', color=f'C{index % 10}', label=_label(run, 'lm', runs),
                      linewidth=1)
    left.set(xlabel='batch', ylabel='loss (nats/token)', title='Training loss')
    left.grid(alpha=0.3)
    if left.lines:
        left.legend(fontsize='small')
    color = _Colors()
    for index, run, domains in evals:
        for domain, (steps, values) in domains.items():
            right.plot(steps, values, color=color(domain), label=_label(run, domain, runs),
                       linestyle=_LINE_STYLES[index % len(_LINE_STYLES)],  # the run: solid, dashed, dotted ...
                       **(_marker(index, len(steps)) or {'marker': '.'}))
    for domain, loss in (ref_losses or {}).items():
        right.axhline(loss, linestyle='--', color=color(domain), linewidth=1, label=f'{domain} reference')
    right.set(xlabel='batch', ylabel='loss (nats/token)', title='Eval loss per domain')
    right.grid(alpha=0.3)
    if right.lines:  # beside the panel: inside it, the legend covers the curves
        right.legend(fontsize='small', loc='upper left', bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    return _save(fig, path)


def _done(steps: Sequence[int]) -> list[int]:
    """Composer logs a batch's training loss at the step before the batch counter moves (the first batch is
    step 0); the report counts batches done, as the evaluation after batch 10 is drawn at 10."""
    return [step + 1 for step in steps]
