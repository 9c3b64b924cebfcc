"""Typed arguments of the data and logging callbacks (no torch import, checked at config load).

The pruning callbacks' arguments live with the pruning config
(:class:`~composer_plugins.pruning.config.MaskLearningConfig`,
:class:`~composer_plugins.pruning.config.LagrangianConfig`), the guard's in
:mod:`composer_plugins.config.guards`; :mod:`composer_plugins.config.callback_schemas`
names the dataclass of every callback this package registers.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Sequence, Union

from composer_plugins.config.typed import from_dict
from composer_plugins.data.domain_weights import per_domain_values
from composer_plugins.data.sizes_csv import MIN_SIZES, SizesTable, parse_param_count, read_sizes_table
from composer_plugins.errors import ConfigError, ShearError

DEFAULT_BOUNDED_FLOOR = 0.3
"""Default ``floor`` of rule ``bounded`` (:data:`composer_plugins.data.weight_rules.BOUNDED_FLOOR`, kept
here so that config load does not import numpy; a test keeps the two equal)."""

WeightRule = Literal['doremi', 'bounded', 'constant']
"""The names of :data:`composer_plugins.data.weight_rules.RULES`."""


SCALING_LAW_KEY = 'scaling_law'
"""The key that makes ``ref_losses`` a :class:`ScalingLawRefs` rather than a per-domain mapping."""


SOURCE_OFFSET_KEY = 'source_losses'
"""The key that makes ``ref_losses`` a :class:`SourceOffsetRefs`."""


@dataclass
class SourceOffsetRefs:
    """``ref_losses: {source_losses: {code: 2.56, ...}}``: the source's own per-domain losses, moved by one
    offset fitted on the run's first evaluation.

    A user with one source model can measure its loss per domain (``shear eval``), but a smaller
    model cannot reach it: raw, every gap is large and the rule ranks domains by how far each is
    from an unreachable target. At the first evaluation the callback sets ``c`` to the mean gap,
    ``c = mean_i (L_i - S_i)``, and from then on compares against ``ref_i = S_i + c``: the target is
    the source's profile across domains at the level the pruned model starts from, so a domain
    gains weight when it lags *more than the others* relative to the source (the first gaps sum to
    zero). ``c`` is logged (``data/ref_offset``) and checkpointed.
    """
    source_losses: Union[dict[str, Any], list[Any], str]
    """Per-domain losses, or the YAML file ``shear ref-loss measure --out`` wrote (``ref_losses: {...}``)."""

    def validate(self, path: str) -> None:
        if isinstance(self.source_losses, str):
            self.source_losses = read_ref_losses_file(self.source_losses, f'{path}.{SOURCE_OFFSET_KEY}')
        self.source_losses = _finite_losses(self.source_losses, f'{path}.{SOURCE_OFFSET_KEY}')

    def check_domains(self, domains: Sequence[str], path: str) -> None:
        per_domain_values(self.source_losses, domains, f'{path}.{SOURCE_OFFSET_KEY}')


def read_ref_losses_file(file: str, key: str) -> dict[str, Any]:
    """The ``ref_losses`` mapping of a YAML file written by ``shear ref-loss`` (no numpy, no torch); errors name
    ``key`` and the file. ``shear report --ref-losses`` reads the same files with it."""
    import yaml

    try:
        data = yaml.safe_load(Path(file).expanduser().read_text(encoding='utf-8'))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f'{key}: cannot read {file!r}: {err}') from None
    losses = data.get('ref_losses') if isinstance(data, dict) else None
    if not isinstance(losses, dict) or not losses:
        raise ConfigError(f'{key}: {file!r} holds no "ref_losses: {{domain: loss}}" mapping '
                          '(write it with shear ref-loss measure --out)')
    return losses


@dataclass
class ScalingLawRefs:
    """``ref_losses: {scaling_law: CSV, target_params: 1.3B}``: references predicted by a scaling law (§2.2).

    Per domain ``i`` the callback fits ``L_i(N) = E_i + A_i / (N / 1e9)^alpha_i`` to the CSV's losses
    of one model family at several sizes (the format of ``shear ref-loss fit``,
    :mod:`composer_plugins.data.sizes_csv`) and takes ``ref_i = L_i(N_target)``, at fit start.

    Attributes:
        scaling_law: the sizes CSV (``params,<domain1>,...``; a path relative to the working directory,
            like every path of a run YAML). It needs a column for every run domain (others are ignored)
            and at least 3 distinct sizes; checked at config load.
        target_params: ``N_target``, e.g. ``1.3B`` or ``1345423360``. Default: the total parameter count
            (embeddings included, :func:`~composer_plugins.pruning.shapes.count_params`) of the
            ``model.pruning.target`` shape, or of the model itself without pruning. The CSV's ``params``
            must count the same way (the paper's LLaMA2 7B / 13B / 70B are total counts).
        record_file: where rank 0 writes the fit and the references (JSON). Default:
            ``ref_losses.json`` next to ``weights_file``; without either they are only logged.
    """
    scaling_law: str
    target_params: Optional[Union[int, float, str]] = None
    record_file: Optional[str] = None

    def validate(self, path: str) -> None:
        if self.target_params is not None:
            try:
                parse_param_count(str(self.target_params), f'{path}.target_params')
            except ShearError as err:
                raise ConfigError(str(err)) from None
        table = self.read_table(path)
        if table.distinct_sizes() < MIN_SIZES:
            raise ConfigError(f'{path}.{SCALING_LAW_KEY}: {self.csv_path()}: {table.distinct_sizes()} distinct model '
                              f'size(s); fitting E + A / N^alpha needs at least {MIN_SIZES}')

    def csv_path(self) -> Path:
        """The CSV, ``~`` expanded."""
        return Path(self.scaling_law).expanduser()

    def target_param_count(self) -> Optional[float]:
        """``target_params`` as a number, or None (the run's own target size)."""
        return None if self.target_params is None else parse_param_count(str(self.target_params))

    def read_table(self, path: str) -> SizesTable:
        """The parsed CSV; errors name ``path`` (the key) and the file."""
        try:
            return read_sizes_table(self.csv_path())
        except ShearError as err:
            raise ConfigError(f'{path}.{SCALING_LAW_KEY}: {err}') from None

    def check_domains(self, domains: Sequence[str], path: str) -> None:
        """Every run domain has a column in the CSV.

        Raises:
            ConfigError: naming ``path``, the file and the missing domains.
        """
        columns = self.read_table(path).domains
        missing = [d for d in domains if d not in columns]
        if missing:
            raise ConfigError(f'{path}.{SCALING_LAW_KEY}: {self.csv_path()}: no column for the run\'s domain(s) '
                              f'{missing}; its domain columns are {columns}')


@dataclass
class DynamicLoadingConfig:
    """``callbacks.dynamic_loading``: how each interval's eval losses re-weight the domains (paper Algorithm 1).

    Attributes:
        rule: ``doremi`` (the paper's, w ∝ w·exp(max(l − ref, 0))), ``bounded`` (a relative gap
            max(l − ref, 0) / ref, and no update takes a domain below ``floor / k``; with no gap the
            weights stay as they are) or ``constant``.
        ref_losses: reference loss per domain, as a mapping or a list in domain order, or
            ``{scaling_law: CSV, target_params: N}`` (:class:`ScalingLawRefs`): the prediction of
            ``L(N) = E + A / N^alpha`` fitted per domain to a model family's losses, at the run's
            target size, or ``{source_losses: ...}`` (:class:`SourceOffsetRefs`): the source's losses
            moved by one offset fitted on the first evaluation (required by ``doremi`` and
            ``bounded``; checked against the run's domains at load).
        clamp_gap: clamp the loss gap at 0 (paper); false matches the original code.
        smoothing: weight of the uniform distribution mixed into the new weights (``doremi``).
        floor: ``f`` of rule ``bounded``: no update takes a domain below ``f / k`` of the mixture
            (or below its current weight, where that is lower).
        weights_file: if set, rank 0 writes the latest weights there after every update
            (``{"batch": b, "domains": {...}}``), which a later stage reads with
            ``train_loader.dataset.weights_from``.
    """
    rule: WeightRule = 'doremi'
    ref_losses: Optional[Union[ScalingLawRefs, SourceOffsetRefs, dict[str, Any], list[Any]]] = None
    clamp_gap: bool = True
    smoothing: float = 0.0
    floor: float = DEFAULT_BOUNDED_FLOOR
    weights_file: Optional[str] = None

    def validate(self, path: str) -> None:
        if self.rule in ('doremi', 'bounded') and self.ref_losses is None:
            raise ConfigError(f'{path}.ref_losses: required by rule {self.rule}')
        for key in ('floor', 'smoothing'):
            value = getattr(self, key)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f'{path}.{key}: got {value}; expected a value in [0, 1)')
        for key, kind in ((SCALING_LAW_KEY, ScalingLawRefs), (SOURCE_OFFSET_KEY, SourceOffsetRefs)):
            if isinstance(self.ref_losses, dict) and key in self.ref_losses:
                _refuse_merged_forms(self.ref_losses, kind, key, f'{path}.ref_losses')
                # not a per-domain map: say why (an unknown key, a missing CSV ...) rather than "unknown domain"
                self.ref_losses = from_dict(kind, self.ref_losses, f'{path}.ref_losses')
        if isinstance(self.ref_losses, (ScalingLawRefs, SourceOffsetRefs)):
            return  # the scaling-law fit gives positive references (E >= 0, A > 0), checked again at fit start
        if self.ref_losses is not None:
            self.ref_losses = _finite_losses(self.ref_losses, f'{path}.ref_losses')
            values = self.ref_losses.values() if isinstance(self.ref_losses, dict) else self.ref_losses
            if self.rule == 'bounded' and any(v <= 0 for v in values):
                raise ConfigError(f'{path}.ref_losses: rule bounded divides by the reference; got '
                                  f'{self.ref_losses}, expected positive losses')


def _refuse_merged_forms(ref_losses: dict[str, Any], kind: type, key: str, path: str) -> None:
    """Refuse ``{key: ..., code: 2.5, ...}``: a ``{key: ...}`` form merged with a per-domain mapping.

    That is what a command-line override such as ``ref_losses={source_losses: {...}}`` gives over a
    YAML that holds ``ref_losses: {code: 2.5, ...}``: OmegaConf merges mappings, it does not replace
    them. A stray key close to one of ``kind``'s own is left to :func:`from_dict` ("Did you mean").
    """
    fields = [f.name for f in dataclasses.fields(kind)]
    stray = [k for k in ref_losses if k not in fields]
    if not stray or any(difflib.get_close_matches(str(k), fields, n=1) for k in stray):
        return
    if all(isinstance(ref_losses[k], (int, float)) and not isinstance(ref_losses[k], bool) for k in stray):
        raise ConfigError(
            f'{path}: holds both {key!r} and per-domain losses for {stray}; an override merges into the '
            f"YAML's mapping rather than replacing it: give {path}=null before the new form",
        )


def _finite_losses(values: Union[dict[str, Any], list[Any]], path: str) -> Union[dict[str, float], list[float]]:
    """``values`` with every entry a finite float (which domains they must cover is the run's to check)."""
    if isinstance(values, dict):
        return dict(zip(values, per_domain_values(values, list(values), path)))
    return per_domain_values(values, [f'#{i}' for i in range(len(values))], path)


@dataclass
class PruningMonitorConfig:
    """``callbacks.pruning_monitor``: where the deterministic masks of each evaluation go.

    Attributes:
        masks_dir: folder of the ``step<N>.pt`` / ``step<N>.txt`` snapshots (usually ``<run folder>/masks``).
    """
    masks_dir: str


@dataclass
class SampleLogConfig:
    """``callbacks.sample_log``: where each rank's record of the samples it trained on goes.

    Attributes:
        out_dir: folder of the per-rank ``rank<r>.jsonl`` files (appended to across restarts).
    """
    out_dir: str
