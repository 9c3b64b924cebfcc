"""A run's latest domain weights as a small JSON file, handed from one stage to the next.

``{"batch": 3200, "domains": {"cc": 0.61, "github": 0.05, ...}}``: the dynamic-loading
callback writes it after each update; ``train_loader.dataset.weights_from`` of the next
stage (continued pre-training) starts from it. Pure Python, no heavy imports.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from composer_plugins.errors import ConfigError


def write_domain_weights(path: str | Path, batch: int, weights: dict[str, float]) -> None:
    """Write atomically (a reader never sees half a file)."""
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
    if sorted(saved) != sorted(domains):
        raise ConfigError(f'{key}: {str(path)!r} has domains {sorted(saved)}, the loader has {sorted(domains)}')
    total = sum(saved.values())
    return [saved[d] / total for d in domains]
