"""The arguments of the optimizers and schedulers in llm-foundry's registries, for a fast check at config load.

``optimizer:`` and ``scheduler:`` hand every key to the registered class, which checks them only
when llm-foundry builds it, after torch and the model are loaded. For the registered names
listed here, a misspelled argument fails at config load instead, in about a second, naming the
key. Any other name (a user's own optimizer) is handed on unchecked. The table is checked
against the classes' signatures by ``tests/config/test_foundry_parity.py``.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable

from composer_plugins.errors import ConfigError

OPTIMIZER_ARGS: dict[str, frozenset[str]] = {
    'decoupled_adamw': frozenset({'lr', 'betas', 'eps', 'weight_decay', 'amsgrad'}),
    'adamw': frozenset({'lr', 'betas', 'eps', 'weight_decay', 'amsgrad', 'maximize', 'foreach', 'capturable',
                        'differentiable', 'fused'}),
    'decoupled_lionw': frozenset({'lr', 'betas', 'weight_decay'}),
    'clip_lion': frozenset({'lr', 'betas', 'weight_decay', 'outlier_threshold'}),
    'adalr_lion': frozenset({'lr', 'betas', 'weight_decay', 'outlier_threshold', 'timeout', 'lr_penalty',
                             'min_scale'}),
}
"""``{registered optimizer: its constructor's arguments}`` (``params`` aside)."""

SCHEDULER_ARGS: dict[str, frozenset[str]] = {
    'constant_with_warmup': frozenset({'t_warmup', 'alpha', 't_max', 'scale_warmup'}),
    'cosine_with_warmup': frozenset({'t_warmup', 't_max', 'alpha_f', 'scale_warmup'}),
    'linear_decay_with_warmup': frozenset({'t_warmup', 'alpha_i', 'alpha_f', 't_max', 'scale_warmup'}),
}
"""``{registered scheduler: its constructor's arguments}``."""


def check_registry_args(table: dict[str, frozenset[str]], name: str, keys: Iterable[str], path: str) -> None:
    """Raises one :class:`ConfigError` naming ``<path>.<key>`` for a key that ``name``'s constructor does not take."""
    accepted = table.get(name)
    if accepted is None:
        return
    for key in keys:
        if key not in accepted:
            close = difflib.get_close_matches(key, sorted(accepted), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ''
            raise ConfigError(f'{path}.{key}: not an argument of {name}.{hint} Expected one of: '
                              f'{", ".join(sorted(accepted))}')
