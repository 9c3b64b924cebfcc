"""A run's latest domain weights as a small JSON file, handed from one stage to the next.

``{"batch": 3200, "domains": {"cc": 0.61, "github": 0.05, ...}}``: the dynamic-loading
callback writes it after each update; ``train_loader.dataset.weights_from`` of the next
stage (continued pre-training) starts from it. Pure Python, no heavy imports.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

from composer_plugins.errors import ConfigError, ShearError


def per_domain_values(values: Union[Mapping[str, Any], Sequence[Any]], domains: Sequence[str], key: str,
                      non_negative: bool = False) -> list[float]:
    """A per-domain map (or a list in domain order) as finite floats in ``domains``' order.

    Raises:
        ConfigError: naming ``key`` and the unknown / missing domains, a wrong length, or the
            domain whose value is not a finite (and, with ``non_negative``, non-negative) number.
    """
    if isinstance(values, Mapping):
        unknown = sorted(set(values) - set(domains))
        missing = [d for d in domains if d not in values]
        if unknown or missing:
            raise ConfigError(f"{key}: its domains must be the run's {list(domains)}"
                              + (f'; unknown: {unknown}' if unknown else '')
                              + (f'; missing: {missing}' if missing else ''))
        ordered = [values[d] for d in domains]
    else:
        if len(values) != len(domains):
            raise ConfigError(f'{key}: {len(values)} values for {len(domains)} domains {list(domains)}')
        ordered = list(values)
    out = []
    for domain, value in zip(domains, ordered):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or (non_negative and number < 0):
            expected = 'a finite, non-negative number' if non_negative else 'a finite number'
            raise ConfigError(f'{key}: domain {domain!r} has {value!r}; expected {expected}')
        out.append(number)
    return out


def write_domain_weights(path: str | Path, batch: int, weights: dict[str, float]) -> None:
    """Write atomically (a reader never sees half a file); non-finite or negative weights are refused."""
    bad = {d: w for d, w in weights.items() if not (math.isfinite(w) and w >= 0)}
    if bad:
        raise ShearError(f'domain weights at batch {batch} are not finite and non-negative: {bad}; '
                         f'{str(path)!r} keeps its last good weights')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f'.{path.name}.tmp-{os.getpid()}')
    staging.write_text(json.dumps({'batch': batch, 'domains': weights}, indent=2) + '\n', encoding='utf-8')
    staging.replace(path)


def read_domain_weights(path: str | Path, domains: Sequence[str], key: str) -> list[float]:
    """The weights of ``domains`` (in that order) from ``path``; ``key`` names the config key in errors."""
    try:
        saved = json.loads(Path(path).read_text(encoding='utf-8'))['domains']
    except FileNotFoundError as err:
        raise ConfigError(f'{key}: {str(path)!r} does not exist (the earlier stage writes it with '
                          'callbacks.dynamic_loading.weights_file)') from err
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f'{key}: {str(path)!r} is not a domain-weights file ({err})') from err
    if not isinstance(saved, dict) or sorted(saved) != sorted(domains):
        raise ConfigError(f'{key}: {str(path)!r} has domains {sorted(saved)}, the loader has {sorted(domains)}')
    weights = per_domain_values(saved, domains, f'{key} ({path})', non_negative=True)
    total = sum(weights)
    if total <= 0:
        raise ConfigError(f'{key}: {str(path)!r} has weights that sum to {total}')
    return [w / total for w in weights]
