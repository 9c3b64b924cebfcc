"""A picture of a dashboard spec's layout: sections top to bottom, panels as boxes naming their keys.

Optional panels (:attr:`~composer_plugins.tools.dashboard.spec.Panel.only_with`) are dashed and
say which runs log them. The README's picture is this function's output
(``shear wandb-dashboard --layout-png docs/wandb_dashboard.png``).
"""
from __future__ import annotations

import logging
from pathlib import Path

from composer_plugins.models.mask_heatmap import pyplot
from composer_plugins.tools.dashboard.spec import COLUMNS, DashboardSpec, Panel, panel_grid

log = logging.getLogger(__name__)

BOX_W, BOX_H, GAP, HEADER = 4.0, 1.15, 0.15, 0.45
MAX_KEYS = 4
KIND_COLORS = {'line': '#dbe9f6', 'stacked_area': '#fde2c8', 'media': '#d9f0d3', 'table': '#eadcf2'}


def _keys_text(panel: Panel) -> str:
    lines = [f're: {panel.regex}'] if panel.regex else []
    lines += list(panel.keys[:MAX_KEYS])
    if len(panel.keys) > MAX_KEYS:
        lines.append(f'... +{len(panel.keys) - MAX_KEYS} more')
    if panel.only_with:
        lines.append(f'(optional: {panel.only_with})')
    return '\n'.join(lines)


def render_layout(spec: DashboardSpec, path: Path, dpi: int = 90) -> Path:
    """Draw ``spec``'s sections and panels to a PNG at ``path``; returns ``path``."""
    plt = pyplot()
    rows = [max(1, -(-len(s.panels) // COLUMNS)) for s in spec.sections]
    height = sum(HEADER + r * (BOX_H + GAP) for r in rows) + GAP
    width = COLUMNS * (BOX_W + GAP) + GAP
    fig, ax = plt.subplots(figsize=(width * 1.25, height * 1.25))
    ax.set(xlim=(0, width), ylim=(height, 0))
    ax.axis('off')
    top = GAP
    for section, nrows in zip(spec.sections, rows):
        ax.text(GAP, top + HEADER / 2, section.name, fontsize=12, fontweight='bold', va='center')
        top += HEADER
        for panel, (col, row) in zip(section.panels, panel_grid(section)):
            x, y = GAP + col * (BOX_W + GAP), top + row * (BOX_H + GAP)
            ax.add_patch(plt.Rectangle((x, y), BOX_W, BOX_H, facecolor=KIND_COLORS[panel.kind], edgecolor='#555555',
                                       linestyle='--' if panel.optional else '-', linewidth=1))
            ax.text(x + 0.08, y + 0.08, f'{panel.title}  [{panel.kind}]', fontsize=7.5, fontweight='bold', va='top')
            ax.text(x + 0.08, y + 0.36, _keys_text(panel), fontsize=6.2, va='top', family='monospace')
        top += nrows * (BOX_H + GAP)
    ax.set_title(f'W&B workspace "{spec.name}" ({spec.entity}/{spec.project}); dashed: optional panels', fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches='tight')
    plt.close(fig)
    log.info('Wrote the layout picture to %s', path)
    return path
