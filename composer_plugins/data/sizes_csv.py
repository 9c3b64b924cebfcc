"""The losses of one model family at several sizes: the CSV that scaling-law reference losses are fitted to.

``shear ref-loss fit CSV`` and ``callbacks.dynamic_loading.ref_losses: {scaling_law: CSV}`` read the
same format: a header ``params,<domain1>,<domain2>,...`` and one row per model size, ``params``
a parameter count (``6738415616``, ``6.7B``, ``125M``) and each domain's loss in nats per token.
Lines whose first cell starts with ``#`` are comments (where the numbers come from), as are blank
lines. Pure Python (no numpy), so a run config can check the file at load in milliseconds; the
fit of ``L(N) = E + A / N^alpha`` is in :mod:`composer_plugins.data.reference_losses`.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from composer_plugins.errors import ShearError

PARAMS_COLUMN = 'params'
MIN_SIZES = 3  # three parameters (E, A, α) need at least three model sizes
COMMENT = '#'

_SUFFIXES = {'': 1.0, 'K': 1e3, 'M': 1e6, 'B': 1e9, 'G': 1e9, 'T': 1e12}
_COUNT = re.compile(r'^\s*([0-9][0-9_]*(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+)\s*([KkMmBbGgTt]?)\s*$')


def parse_param_count(text: str, what: str = 'parameter count') -> float:
    """A positive parameter count: ``125M``, ``1.3B``, ``7e9``, ``6_700_000_000``.

    Args:
        text: The count, optionally with a K/M/B/T suffix (case-insensitive).
        what: How error messages name the value (a file position or an option).

    Raises:
        ShearError: Not a positive number.
    """
    match = _COUNT.match(str(text))
    if match is None:
        raise ShearError(f'{what}: got {text!r}; expected a positive number, optionally with K/M/B/T suffix (1.3B)')
    value = float(match.group(1).replace('_', '')) * _SUFFIXES[match.group(2).upper()]
    if not math.isfinite(value) or value <= 0:
        raise ShearError(f'{what}: got {text!r}; expected a positive parameter count')
    return value


@dataclass
class SizesTable:
    """A parsed sizes CSV.

    Attributes:
        params: Parameter count of each size (row order).
        losses: Per domain (column order), the loss of each size.
    """
    params: list[float]
    losses: dict[str, list[float]]

    @property
    def domains(self) -> list[str]:
        """The domain columns, in file order."""
        return list(self.losses)

    def distinct_sizes(self) -> int:
        """How many different parameter counts the rows hold."""
        return len(set(self.params))


def read_sizes_table(path: str | Path) -> SizesTable:
    """Read ``params,<domain1>,<domain2>,...`` with one row per model size.

    Raises:
        ShearError: Missing file, no ``params`` column or domain column, a non-numeric or
            missing value (named by line and column), fewer than :data:`MIN_SIZES` rows;
            every message starts with the file's path.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ShearError(f'{path}: no such CSV file')
    try:
        with path.open(newline='') as handle:
            rows = [(line, row) for line, row in enumerate(csv.reader(handle), start=1)
                    if any(cell.strip() for cell in row) and not row[0].lstrip().startswith(COMMENT)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ShearError(f'{path}: cannot read the CSV: {err}') from err
    if not rows:
        raise ShearError(f'{path}: empty CSV; expected a header params,<domain1>,...')
    header = [cell.strip() for cell in rows[0][1]]
    lowered = [cell.lower() for cell in header]
    if lowered.count(PARAMS_COLUMN) != 1:
        raise ShearError(f'{path}: header {header} needs exactly one {PARAMS_COLUMN!r} column')
    p_col = lowered.index(PARAMS_COLUMN)
    domains = [(i, name) for i, name in enumerate(header) if i != p_col]
    if not domains:
        raise ShearError(f'{path}: header {header} has no domain column besides {PARAMS_COLUMN!r}')
    empty = [i + 1 for i, name in domains if not name]
    duplicates = sorted({name for _, name in domains if [n for _, n in domains].count(name) > 1})
    if empty or duplicates:
        raise ShearError(f'{path}: header {header}: empty column name(s) at {empty} or duplicates {duplicates}')
    data = rows[1:]
    if len(data) < MIN_SIZES:
        raise ShearError(
            f'{path}: {len(data)} model size(s); fitting E + A / N^alpha needs at least {MIN_SIZES} rows')
    params: list[float] = []
    losses: dict[str, list[float]] = {name: [] for _, name in domains}
    for line, row in data:
        if len(row) != len(header):
            raise ShearError(f'{path}: line {line} has {len(row)} cells; the header has {len(header)}')
        params.append(parse_param_count(row[p_col], f'{path}: line {line}, column {PARAMS_COLUMN!r}'))
        for i, name in domains:
            losses[name].append(_parse_loss(row[i], f'{path}: line {line}, column {name!r}'))
    return SizesTable(params=params, losses=losses)


def _parse_loss(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ShearError(f'{what}: got {text!r}; expected a number (the loss in nats/token)') from None
    if not math.isfinite(value) or value < 0:
        raise ShearError(f'{what}: got {text!r}; expected a finite, non-negative loss')
    return value
