"""Assemble ``report.md`` (and its PNGs) from run folders."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

from composer_plugins.models.mask_heatmap import layer_keep
from composer_plugins.tools.report import plots
from composer_plugins.tools.report.metrics import RunData, load_run, read_model_config

log = logging.getLogger(__name__)

REPORT_FILENAME = 'report.md'
MISSING = '–'


@dataclass(frozen=True)
class ShapeRow:
    """The shape of a run's exported model (from its ``config.json``)."""

    layers: int
    heads: int
    kv_heads: int
    hidden: int
    ffn: int
    params: int


def model_shape_row(run: RunData) -> Optional[ShapeRow]:
    """Shape and exact parameter count of the run's exported model, or None without ``config.json``."""
    if run.config_path is None:
        return None
    from composer_plugins.pruning.shapes import ModelShape, count_params

    shape = ModelShape.from_hf_config(read_model_config(run.config_path))
    return ShapeRow(shape.num_layers, shape.num_attention_heads, shape.num_key_value_heads,
                    shape.hidden_size, shape.intermediate_size, count_params(shape))


def last_eval_losses(run: RunData) -> dict[str, float]:
    """The last logged eval loss per domain."""
    return {domain: values[-1] for domain, (_, values) in run.eval_losses().items() if values}


def format_loss(value: float) -> str:
    """How losses are printed in the table (4 decimals)."""
    return f'{value:.4f}'


def _slug(name: str) -> str:
    return re.sub(r'[^A-Za-z0-9_.-]+', '_', name).strip('._') or 'run'


def _unique_names(paths: Sequence[Path]) -> list[str]:
    names: list[str] = []
    for path in paths:
        base = path.expanduser().resolve().name or str(path)
        name, n = base, 2
        while name in names:
            name, n = f'{base}-{n}', n + 1
        names.append(name)
    return names


def summary_table(runs: Sequence[RunData]) -> list[str]:
    """Markdown lines of the final table: shape, parameters and last eval loss per domain."""
    losses = {run.name: last_eval_losses(run) for run in runs}
    domains = sorted({d for per_run in losses.values() for d in per_run})
    header = ['run', 'layers', 'heads', 'kv heads', 'hidden', 'FFN', 'params',
              *(f'eval loss {d}' for d in domains)]
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for run in runs:
        shape = model_shape_row(run)
        cells = [run.name]
        if shape is None:
            cells += [MISSING] * 6
        else:
            cells += [str(shape.layers), str(shape.heads), str(shape.kv_heads), str(shape.hidden),
                      str(shape.ffn), f'{shape.params:,}']
        cells += [format_loss(losses[run.name][d]) if d in losses[run.name] else MISSING for d in domains]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return lines


def _changed_units_line(run: RunData) -> str:
    """``- run: changed units at the end: mask n of N, ...`` (the last logged value per mask)."""
    parts = []
    for mask in run.suffixes('l0/changed_units/'):
        _, values = run.series(f'l0/changed_units/{mask}')
        parts.append(f'{mask} {int(values[-1])}' if values else f'{mask} {MISSING}')
    return f'- `{run.name}`: units whose decision changed since step 0, at the end: {", ".join(parts)}'


def _image(lines: list[str], path: Optional[Path], out_dir: Path, alt: str) -> bool:
    if path is None:
        return False
    lines += [f'![{alt}]({path.relative_to(out_dir).as_posix()})', '']
    return True


def write_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    ref_losses: Optional[Mapping[str, float]] = None,
    ref_losses_path: Optional[str | Path] = None,
) -> Path:
    """Write ``out_dir/report.md`` and its PNGs for ``run_dirs``; returns the markdown path.

    Args:
        run_dirs: run folders, each with a ``metrics.jsonl``.
        out_dir: the report folder (created; existing report files are overwritten).
        ref_losses: reference loss per domain, drawn as dashed lines on the eval-loss figure.
        ref_losses_path: where ``ref_losses`` came from, stated in the report.

    Raises:
        ShearError: a run folder without ``metrics.jsonl`` (named in the message).
    """
    paths = [Path(p) for p in run_dirs]
    runs = [load_run(p, name) for p, name in zip(paths, _unique_names(paths))]
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)

    lines = ['# Training report', '', 'Made from the run folders:', '']
    lines += [f'- `{run.name}`: `{run.path.resolve()}`' for run in runs]
    if ref_losses:
        source = f' (from `{ref_losses_path}`)' if ref_losses_path else ''
        lines += ['', f'Reference losses{source}: ' + ', '.join(f'{d} {v:.4f}' for d, v in ref_losses.items())]
    lines.append('')

    lines += ['## Domain weights', '']
    if not _image(lines, plots.plot_domain_weights(runs, out / 'domain_weights.png'), out, 'domain weights'):
        lines += ['No `data/weight/*` metrics in these runs.', '']

    lines += ['## Sparsity', '']
    if not _image(lines, plots.plot_sparsity(runs, out / 'sparsity.png'), out, 'expected vs target sparsity'):
        lines += ['No `l0/expected_sparsity/*` metrics in these runs (not pruning runs).', '']

    lines += ['## Do the masks learn?', '']
    if _image(lines, plots.plot_changed_units(runs, out / 'changed_units.png'), out, 'changed units'):
        lines += [_changed_units_line(run) for run in runs if run.suffixes('l0/changed_units/')] + ['']
    else:
        lines += ['No `l0/changed_units/*` metrics in these runs.', '']

    lines += ['## Masks per layer', '']
    any_masks = False
    for run in runs:
        if run.masks is None:
            continue
        any_masks = True
        keep = layer_keep(run.masks)
        lines += [f'### {run.name} (masks step {run.mask_step})', '']
        _image(lines, plots.plot_mask_heatmap(run, out / f'masks_{_slug(run.name)}.png'), out,
               f'{run.name} kept heads and FFN channels')
        lines += [f'Surviving layers: {", ".join(map(str, keep.kept_layers)) or "none"} '
                  f'({len(keep.kept_layers)} of {keep.num_layers})']
        if keep.hidden is not None:
            lines += ['', f'Hidden channels kept: {keep.hidden[0]} of {keep.hidden[1]}']
        lines.append('')
    if not any_masks:
        lines += ['No `masks/step<N>.pt` snapshots in these runs.', '']

    lines += ['## Losses', '']
    if not _image(lines, plots.plot_losses(runs, out / 'losses.png', ref_losses), out, 'training and eval loss'):
        lines += ['No loss metrics in these runs.', '']

    lines += ['## Summary', '', *summary_table(runs), '',
              'Shapes and parameter counts come from an exported model\'s `config.json` '
              '(`RUN/exported/` or another sub-folder); eval losses are the last logged per domain.', '']

    report = out / REPORT_FILENAME
    report.write_text('\n'.join(lines), encoding='utf-8')
    log.info('Wrote report for %d run(s) to %s', len(runs), report.resolve())
    return report
