"""Calibration rows for importance scores: the first rows of each domain's split, domains in turn.

Used by ``shear prune-oneshot`` and by ``callbacks.mask_learning`` with ``init: importance``,
so that both score the same rows. Rows are read in place (no shared memory), which is safe
inside a running training process.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from composer_plugins.errors import ShearError
from data_prep.mds import read_rows_in_place


def calibration_rows(data: str | Path, split: str, domains: Optional[Sequence[str]], count: int) -> list[np.ndarray]:
    """``count`` rows: the first ``ceil(count / D)`` rows of each of the ``D`` domains, interleaved.

    ``data`` is ``shear prep`` output (``<data>/<domain>/<split>``), or a single MDS folder
    with ``<data>/<split>/index.json`` (then ``domains`` must be None).

    Raises:
        ShearError: Missing shards, or fewer than ``count`` rows in all.
    """
    from composer_plugins.data.reference_losses import resolve_domains

    if count < 1:
        raise ShearError(f'calibration rows: got {count}; must be at least 1')
    root = Path(data).expanduser()
    if domains is None and (root / split / 'index.json').is_file():
        interleaved = read_rows_in_place(root / split, count)
        chosen = [str(root / split)]
    else:
        chosen = resolve_domains(root, split, domains)
        per_domain = math.ceil(count / len(chosen))
        by_domain = [read_rows_in_place(root / d / split, per_domain) for d in chosen]
        interleaved = [rows[i] for i in range(per_domain) for rows in by_domain if i < len(rows)][:count]
    if len(interleaved) < count:
        raise ShearError(f'{data}: only {len(interleaved)} {split} rows in {chosen}, '
                         f'fewer than the {count} calibration rows asked for')
    return interleaved
