"""The data loaders of a run YAML: llm-foundry's ``text`` loader and this package's ``domain_mixture``.

Each dataset's local folder is checked at config load (an MDS ``index.json`` and its shards'
sizes), so a wrong path fails in about a second; no torch import.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

from composer_plugins.config.foundry_keys import foundry_text_dataset_keys
from composer_plugins.data.domain_weights import per_domain_values, read_domain_weights
from composer_plugins.data.shard_check import check_row_length, check_shards
from composer_plugins.errors import ConfigError


@dataclass
class TextDatasetConfig:
    """``*_loader.dataset`` of llm-foundry's ``text`` loader: MDS shards with a ``tokens`` column."""
    local: str
    max_seq_len: int
    remote: Optional[str] = None
    split: Optional[str] = None
    shuffle: bool = False
    shuffle_seed: int = 9176
    shuffle_algo: Optional[str] = None
    num_canonical_nodes: Optional[int] = None
    eos_token_id: Optional[int] = None
    token_encoding_type: Optional[str] = None
    options: dict[str, Any] = field(default_factory=dict, metadata={'passthrough': foundry_text_dataset_keys})
    """Any other argument of llm-foundry's ``StreamingTextDataset`` (``predownload``, ``cache_limit`` ...)."""

    def validate(self, path: str) -> None:
        if self.remote is None:
            shard_dir = os.path.join(self.local, self.split or '')
            if not os.path.isfile(os.path.join(shard_dir, 'index.json')):
                raise ConfigError(
                    f'{path}.local: no MDS index at {os.path.join(shard_dir, "index.json")!r}; '
                    'prepare shards first (see README: data) or set remote',
                )
            check_shards(shard_dir, f'{path}.local')
            check_row_length(shard_dir, self.max_seq_len, f'{path}.local', f'{path}.max_seq_len')


@dataclass(kw_only=True)
class DataLoaderOptions:
    """The torch ``DataLoader`` keys every loader accepts.

    ``persistent_workers`` unset is llm-foundry's default, true, wherever there are workers (torch refuses it
    without). Workers that persist are forked once per run; otherwise every epoch forks them again, and the
    ``domain_mixture`` loader's epoch is one update interval, after an evaluation that may leave threads
    running in the forking process.
    """
    drop_last: bool = True
    num_workers: int = 0
    pin_memory: bool = False
    # torch needs None with 0 workers
    prefetch_factor: Optional[int] = field(default=None, metadata={'keep_none': True})
    persistent_workers: Optional[bool] = None
    timeout: int = 0

    def __post_init__(self) -> None:
        if self.persistent_workers is None:
            self.persistent_workers = self.num_workers > 0

    def validate(self, path: str) -> None:
        """torch's ``DataLoader`` refuses both keys without worker processes; say so before anything is built."""
        if self.num_workers < 0:
            raise ConfigError(f'{path}.num_workers: got {self.num_workers}; expected 0 or more')
        for key in ('persistent_workers', 'prefetch_factor'):
            if self.num_workers == 0 and getattr(self, key) not in (None, False):
                raise ConfigError(f'{path}.{key}: got {getattr(self, key)!r} with num_workers: 0; torch needs '
                                  f'worker processes for it: set num_workers above 0 or leave {key} unset')


@dataclass(kw_only=True)
class TextLoaderConfig(DataLoaderOptions):
    """``train_loader`` / ``eval_loader`` with llm-foundry's ``text`` dataloader."""
    name: Literal['text']
    dataset: TextDatasetConfig
    label: Optional[str] = None


@dataclass
class MixtureDatasetConfig:
    """``train_loader.dataset`` of the ``domain_mixture`` loader (``shear prep`` output layout).

    ``<local>/<domain>/<split>`` holds each domain's MDS shards. One update interval is
    ``interval_batches`` global batches (one Composer epoch); ``weights`` are the initial
    domain weights (uniform when omitted), or ``weights_from`` names the domain-weights file
    an earlier stage wrote (``callbacks.dynamic_loading.weights_file``). Its evaluators, one per
    domain labelled with it, are ``eval_loaders: {per_domain: {...}}``
    (:mod:`composer_plugins.config.eval_loaders`).
    """
    local: str
    domains: list[str]
    max_seq_len: int
    interval_batches: int
    split: str = 'train'
    remote: Optional[str] = None
    weights: Optional[list[float]] = None
    weights_from: Optional[str] = None
    seed: int = 17

    def validate(self, path: str) -> None:
        if self.weights_from is not None:
            if self.weights is not None:
                raise ConfigError(f'{path}.weights_from: set weights or weights_from, not both')
            self.weights = read_domain_weights(self.weights_from, self.domains, f'{path}.weights_from')
            self.weights_from = None  # read: the config now holds the weights themselves (validated again as such)
        if not self.domains or len(set(self.domains)) != len(self.domains):
            raise ConfigError(f'{path}.domains: got {self.domains}; expected distinct domain names')
        if self.interval_batches <= 0:
            raise ConfigError(f'{path}.interval_batches: got {self.interval_batches}; expected a positive int')
        if self.weights is not None:
            per_domain_values(self.weights, self.domains, f'{path}.weights', non_negative=True)
            if abs(sum(self.weights) - 1.0) > 1e-6:
                raise ConfigError(f'{path}.weights: {self.weights} must be non-negative and sum to 1 within 1e-6 '
                                  f'(they sum to {sum(self.weights):.10g})')
        if self.remote is None:
            for domain in self.domains:
                index = os.path.join(self.local, domain, self.split, 'index.json')
                if not os.path.isfile(index):
                    raise ConfigError(f'{path}.domains: domain {domain!r} has no MDS index at {index!r}; '
                                      f'{self._prepared_domains()}')
                check_shards(os.path.dirname(index), f'{path}.domains[{domain}]')
                check_row_length(os.path.dirname(index), self.max_seq_len, f'{path}.domains[{domain}]',
                                 f'{path}.max_seq_len')

    def _prepared_domains(self) -> str:
        """Which domains of ``local`` have a ``<split>`` index, for an error message."""
        found = sorted(entry for entry in (os.listdir(self.local) if os.path.isdir(self.local) else [])
                       if os.path.isfile(os.path.join(self.local, entry, self.split, 'index.json')))
        if not found:
            return f'no domain of {self.local!r} has a {self.split!r} split (prepare it with shear prep)'
        return f'the domains with a {self.split!r} split in {self.local!r} are {found}'


@dataclass(kw_only=True)
class MixtureLoaderConfig(DataLoaderOptions):
    """``train_loader`` with this package's ``domain_mixture`` loader (dynamic batch loading)."""
    name: Literal['domain_mixture']
    dataset: MixtureDatasetConfig


LoaderConfig = Union[TextLoaderConfig, MixtureLoaderConfig]
