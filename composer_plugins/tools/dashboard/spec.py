"""The W&B workspace of a project's pruning runs, as plain typed data (no wandb import).

:func:`build_spec` lays out five sections (see :data:`SECTION_NAMES`): **L0** (expected
against target sparsity, one panel per mask; the Lagrange multipliers; the expected parameter
count; the kept-units heatmap and the shape table), **Loss** (LM, Lagrangian, KD), **Data**
(domain weights as a stacked area, samples per domain), **Eval** (each domain's eval loss
against its reference loss, with the gap) and **System** (throughput, MFU).

Each :class:`Panel` names exact metric keys, or a regular expression where the domains are not
known. A panel whose keys only some runs log says which in :attr:`Panel.only_with` (for example
``distillation`` for ``loss/train/kd``); a panel with ``only_with=None`` shows keys that every
pruning run with W&B on logs. :mod:`composer_plugins.tools.dashboard.workspace` turns the spec
into a ``wandb_workspaces`` workspace.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Optional, get_args

from composer_plugins.config.wandb_visuals import HEATMAP_KEY, SHAPE_TABLE_KEY, WEIGHTS_TABLE_KEY
from composer_plugins.errors import ShearError
from composer_plugins.pruning.config import MaskType

PanelKind = Literal['line', 'stacked_area', 'media', 'table']
"""``line``: a line plot; ``stacked_area``: its stacked-area style; ``media``: a media browser (images);
``table``: a W&B table logged with ``logger.log_table``."""

METRICS_FILENAME = 'metrics.jsonl'
SECTION_NAMES = ('L0', 'Loss', 'Data', 'Eval', 'System')
ALL_MASK_TYPES: tuple[str, ...] = get_args(MaskType)

DISTILLATION = 'distillation'
SPEED_MONITOR = 'speed_monitor'
GPU_FLOPS = 'speed_monitor on a GPU with known peak flops'
OTHER_MASK_TYPES = 'runs that prune this mask type'

_SPARSITY = re.compile(r'^l0/expected_sparsity/(?P<name>.+)$')
_WEIGHT = re.compile(r'^data/weight/(?P<name>.+)$')
_EVAL = re.compile(r'^eval/(?P<name>.+)/loss$')


@dataclass(frozen=True)
class Panel:
    """One panel of a section.

    Attributes:
        title: the panel's title.
        kind: see :data:`PanelKind`.
        keys: the exact metric (or media / table) keys it shows.
        regex: a regular expression of metric keys (line plots only), where the names are not known.
        only_with: None when every pruning run with W&B on logs its keys; otherwise the kind of
            run that does (``distillation``, ``speed_monitor`` ...): an *optional* panel.
    """
    title: str
    kind: PanelKind = 'line'
    keys: tuple[str, ...] = ()
    regex: Optional[str] = None
    only_with: Optional[str] = None

    @property
    def optional(self) -> bool:
        return self.only_with is not None


@dataclass(frozen=True)
class Section:
    """A named, collapsible group of panels, laid out left to right, :data:`COLUMNS` a row."""
    name: str
    panels: tuple[Panel, ...]


COLUMNS = 3


@dataclass(frozen=True)
class RunNames:
    """The mask types and domains a project's runs use (the names inside the metric keys).

    Attributes:
        masks: mask types (``layer``, ``kv_group`` ...); empty: all of them, each panel optional.
        domains: data domains; empty: regular-expression panels over every domain.
    """
    masks: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()

    @classmethod
    def from_keys(cls, keys: Iterable[str]) -> RunNames:
        """The names in a run's metric keys (``l0/expected_sparsity/<mask>``, ``data/weight/<domain>``,
        ``eval/<domain>/loss``), masks in :data:`ALL_MASK_TYPES` order, domains sorted."""
        keys = set(keys)
        masks = {m['name'] for key in keys if (m := _SPARSITY.match(key))}
        domains = {m['name'] for key in keys if (m := _WEIGHT.match(key) or _EVAL.match(key))}
        ordered = tuple(name for name in ALL_MASK_TYPES if name in masks) + tuple(sorted(masks - set(ALL_MASK_TYPES)))
        return cls(masks=ordered, domains=tuple(sorted(domains)))


@dataclass(frozen=True)
class DashboardSpec:
    """The workspace: where it is saved and what it shows."""
    entity: str
    project: str
    name: str
    sections: tuple[Section, ...] = field(default_factory=tuple)

    def section(self, name: str) -> Section:
        """The section called ``name`` (KeyError if none)."""
        for section in self.sections:
            if section.name == name:
                return section
        raise KeyError(name)

    def panels(self) -> list[Panel]:
        return [panel for section in self.sections for panel in section.panels]

    def keys(self, optional: bool = False) -> set[str]:
        """The exact keys of the panels that every pruning run logs (and of the optional ones too if asked)."""
        return {key for panel in self.panels() if optional or not panel.optional for key in panel.keys}

    def to_dict(self) -> dict[str, Any]:
        """A JSON / YAML-ready mapping; each panel also carries ``optional``."""
        data = asdict(self)
        for section, section_data in zip(self.sections, data['sections']):
            for panel, panel_data in zip(section.panels, section_data['panels']):
                panel_data['keys'] = list(panel.keys)
                panel_data['optional'] = panel.optional
        return data


def build_spec(entity: str, project: str, name: str = 'Sheared-LLaMA pruning',
               names: Optional[RunNames] = None) -> DashboardSpec:
    """The workspace of :mod:`this module's docstring <composer_plugins.tools.dashboard.spec>`.

    Args:
        entity: W&B entity (user or team).
        project: W&B project.
        name: the saved view's name.
        names: the runs' mask types and domains (:meth:`RunNames.from_keys` of a run's keys); without
            it every mask type gets an optional panel and the domain panels use regular expressions.
    """
    names = names or RunNames()
    return DashboardSpec(entity=entity, project=project, name=name, sections=(
        Section('L0', _l0_panels(names.masks)),
        Section('Loss', (
            Panel('LM loss', keys=('loss/train/lm', 'loss/train/total')),
            Panel('Lagrangian', keys=('loss/train/lagrangian',)),
            Panel('Distillation: KD and LM', keys=('loss/train/kd', 'loss/train/lm'), only_with=DISTILLATION),
        )),
        Section('Data', _data_panels(names.domains)),
        Section('Eval', _eval_panels(names.domains)),
        Section('System', (
            Panel('Throughput (samples/s)', keys=('throughput/samples_per_sec', 'throughput/device/samples_per_sec'),
                  only_with=SPEED_MONITOR),
            Panel('Throughput (batches/s)', keys=('throughput/batches_per_sec',), only_with=SPEED_MONITOR),
            Panel('MFU', keys=('throughput/device/mfu',), only_with=GPU_FLOPS),
        )),
    ))


def _l0_panels(masks: tuple[str, ...]) -> tuple[Panel, ...]:
    only_with = None if masks else OTHER_MASK_TYPES
    shown = masks or ALL_MASK_TYPES
    per_mask = tuple(Panel(f'{mask}: expected vs target sparsity',
                           keys=(f'l0/expected_sparsity/{mask}', f'l0/target_sparsity/{mask}'), only_with=only_with)
                     for mask in shown)
    if masks:
        multipliers = (Panel('Lagrange multipliers', keys=tuple(f'l0/lambda{i}/{m}' for m in masks for i in (1, 2))),)
        learning = (Panel('Changed units since step 0', keys=tuple(f'l0/changed_units/{m}' for m in masks)),
                    Panel('Undecided gates (keep prob in (0.05, 0.95))',
                          keys=tuple(f'l0/decision_margin/{m}' for m in masks)))
    else:
        multipliers = (Panel('Lagrange multipliers', regex=r'l0/lambda[12]/.*'),)
        learning = (Panel('Changed units since step 0', regex=r'l0/changed_units/.*'),
                    Panel('Undecided gates (keep prob in (0.05, 0.95))', regex=r'l0/decision_margin/.*'))
    return per_mask + multipliers + learning + (
        Panel('Expected parameters', keys=('l0/expected_params',)),
        Panel('Kept heads and FFN channels per layer', kind='media', keys=(HEATMAP_KEY,)),
        Panel('Model shape (source, target)', kind='table', keys=(SHAPE_TABLE_KEY,)),
    )


def _data_panels(domains: tuple[str, ...]) -> tuple[Panel, ...]:
    if domains:
        weights = Panel('Domain weights', kind='stacked_area', keys=tuple(f'data/weight/{d}' for d in domains))
        gaps = Panel('Loss gap to the reference, per update', keys=tuple(f'data/gap/{d}' for d in domains))
        samples = Panel('Samples per domain', keys=tuple(f'data/samples/{d}' for d in domains))
    else:
        weights = Panel('Domain weights', kind='stacked_area', regex=r'data/weight/.*')
        gaps = Panel('Loss gap to the reference, per update', regex=r'data/gap/.*')
        samples = Panel('Samples per domain', regex=r'data/samples/.*')
    return (weights, gaps, samples, Panel('Weight entropy (nats)', keys=('data/weight_entropy',)),
            Panel('Final domain weights', kind='table', keys=(WEIGHTS_TABLE_KEY,)))


def _eval_panels(domains: tuple[str, ...]) -> tuple[Panel, ...]:
    if not domains:
        return (Panel('Eval loss per domain', regex=r'eval/.*/(loss|ref_loss)'),
                Panel('Gap to the reference loss', regex=r'eval/.*/gap'))
    return tuple(Panel(f'{d}: eval loss vs reference, gap', keys=(f'eval/{d}/loss', f'eval/{d}/ref_loss',
                                                                  f'eval/{d}/gap'))
                 for d in domains)


def panel_grid(section: Section) -> list[tuple[int, int]]:
    """``(column, row)`` of each panel: :data:`COLUMNS` a row, in order."""
    return [(index % COLUMNS, index // COLUMNS) for index in range(len(section.panels))]


def read_run_keys(run_dir: Path) -> set[str]:
    """Every metric key in ``<run_dir>/metrics.jsonl`` (the ``jsonl`` logger's file).

    Raises:
        ShearError: naming the file, when it is missing or unreadable.
    """
    from composer_plugins.loggers.jsonl_metrics import read_metrics

    path = Path(run_dir).expanduser() / METRICS_FILENAME
    try:
        records = read_metrics(path)
    except (OSError, ValueError) as err:
        raise ShearError(f'{path}: cannot read the run\'s metrics (was the jsonl logger on?): {err}') from err
    return {key for record in records for key in record if key != 'batch'}
