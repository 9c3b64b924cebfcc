"""``eval_loaders`` of a run YAML: llm-foundry's explicit list, or one evaluator per training domain.

Dynamic batch loading needs one evaluator per domain of the ``domain_mixture`` train loader,
labelled with the domain. Instead of writing one ``text`` loader per domain, a run can say::

    eval_loaders:
      per_domain:          # one `text` evaluator per train_loader.dataset.domains entry, labelled by domain
        split: eval
        num_workers: 2

which stands for exactly the list an llm-foundry user would write out, in the domains' order::

    eval_loaders:
      - label: <domain>
        name: text
        dataset:
          local: <train_loader.dataset.local>/<domain>
          remote: <train_loader.dataset.remote>/<domain>     # only if the train loader has one
          split: eval
          shuffle: false
          max_seq_len: <train_loader.dataset.max_seq_len>
        drop_last: false
        num_workers: 2

The expansion happens at config load (:func:`eval_loader_list`), so everything after it (the
shard checks, ``data_folders()``, llm-foundry's config) sees only the explicit list.
:func:`expand_raw_eval_loaders` does the same on a plain config mapping, for tools that rewrite
data paths before validation (``shear plan``). No torch import.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from composer_plugins.config.loaders import DataLoaderOptions, LoaderConfig, TextLoaderConfig
from composer_plugins.config.typed import from_dict
from composer_plugins.errors import ConfigError

SHORT_FORM = 'per_domain'


@dataclass(kw_only=True)
class PerDomainEvalConfig(DataLoaderOptions):
    """``eval_loaders.per_domain``: what every domain's ``text`` evaluator shares.

    Attributes:
        split: the split each domain's evaluator reads (``<local>/<domain>/<split>``).
        shuffle: shuffle the eval samples (``dataset.shuffle``).
        max_seq_len: default: ``train_loader.dataset.max_seq_len``.
        local, remote: the folder (object-store prefix) holding ``<domain>/<split>``; default:
            the train loader's own.
        drop_last, num_workers, ...: the ``DataLoader`` keys of every loader (``drop_last`` is
            false by default here: an evaluator sees every sample).
    """
    split: str = 'eval'
    shuffle: bool = False
    max_seq_len: Optional[int] = None
    local: Optional[str] = None
    remote: Optional[str] = None
    drop_last: bool = False

    def loaders(self, domains: Sequence[str], local: str, remote: Optional[str],
                max_seq_len: int) -> list[dict[str, Any]]:
        """The explicit ``eval_loaders`` entries (plain mappings), one per domain of a train loader
        reading ``local`` (``remote``) with ``max_seq_len``."""
        local = self.local if self.local is not None else local
        remote = self.remote if self.remote is not None else remote
        options = {f.name: getattr(self, f.name) for f in dataclasses.fields(DataLoaderOptions)}
        entries = []
        for domain in domains:
            dataset = {'local': os.path.join(local, domain), 'split': self.split, 'shuffle': self.shuffle,
                       'max_seq_len': self.max_seq_len if self.max_seq_len is not None else max_seq_len}
            if remote is not None:  # the domain_mixture loader's layout: <remote>/<domain>/<split>
                dataset['remote'] = f'{remote.rstrip("/")}/{domain}'
            entries.append({'label': domain, 'name': 'text', 'dataset': dataset, **options})
        return entries


@dataclass
class PerDomainEvalLoaders:
    """``eval_loaders: {per_domain: {...}}``: one ``text`` evaluator per training domain."""
    per_domain: PerDomainEvalConfig


def _short_form(value: dict[str, Any], train_name: Any, path: str) -> PerDomainEvalConfig:
    """The checked ``per_domain`` block; the short form needs a ``domain_mixture`` train loader."""
    spec = from_dict(PerDomainEvalLoaders, value, path).per_domain
    if train_name != 'domain_mixture':
        raise ConfigError(f'{path}.{SHORT_FORM}: needs train_loader.name: domain_mixture (its dataset.domains '
                          f'name the evaluators; got train_loader.name {train_name!r}); with another train '
                          'loader write eval_loaders as a list of text loaders')
    return spec


def eval_loader_list(value: Any, train_loader: LoaderConfig,
                     path: str = 'eval_loaders') -> Optional[list[TextLoaderConfig]]:
    """``eval_loaders`` as written (a list, ``{per_domain: ...}`` or null) as checked ``text`` loaders.

    Raises:
        ConfigError: naming the key: an unknown or mistyped key of either form, a missing eval
            shard, or the short form without a ``domain_mixture`` train loader.
    """
    if value is None:
        return None
    if isinstance(value, dict):
        spec = _short_form(value, train_loader.name, path)
        train = train_loader.dataset  # a MixtureDatasetConfig: the short form checked the loader's name
        entries = spec.loaders(train.domains, train.local, train.remote, train.max_seq_len)
        return [from_dict(TextLoaderConfig, entry, f'{path}.{SHORT_FORM}[{entry["label"]}]') for entry in entries]
    if isinstance(value, (list, tuple)):
        return [from_dict(TextLoaderConfig, entry, f'{path}[{i}]') for i, entry in enumerate(value)]
    raise ConfigError(f'{path}: got {value!r}; expected a list of text loaders or {{{SHORT_FORM}: {{...}}}} '
                      '(one evaluator per train_loader domain)')


def expand_raw_eval_loaders(data: dict[str, Any], path: str = 'eval_loaders') -> dict[str, Any]:
    """``data`` (a plain run config) with a ``{per_domain: ...}`` ``eval_loaders`` written out as a list.

    For tools that rewrite data paths in the plain mapping before it is validated; the train
    loader's fields are taken as written (:func:`eval_loader_list` checks them all afterwards).
    Any other ``eval_loaders`` is left as it is.
    """
    value = data.get('eval_loaders')
    if not isinstance(value, dict):
        return data
    train = data.get('train_loader') if isinstance(data.get('train_loader'), dict) else {}
    spec = _short_form(value, train.get('name'), path)
    dataset = train.get('dataset') if isinstance(train.get('dataset'), dict) else {}
    domains, local = dataset.get('domains'), dataset.get('local')
    if not (isinstance(domains, list) and all(isinstance(d, str) for d in domains) and isinstance(local, str)):
        raise ConfigError(f'{path}.{SHORT_FORM}: needs train_loader.dataset.local (a folder) and '
                          f'train_loader.dataset.domains (a list of names); got local {local!r}, domains {domains!r}')
    entries = spec.loaders(domains, local, dataset.get('remote'), dataset.get('max_seq_len'))
    return {**data, 'eval_loaders': entries}
