"""Which dataclass types the arguments of each callback this package registers (no torch import).

``callbacks.<name>`` of a run YAML is checked at config load against :data:`CALLBACK_SCHEMAS`
when ``<name>`` is one of ours, so a misspelled key fails in about a second with one message
naming ``callbacks.<name>.<key>``; the callback class builds its arguments from the same
dataclass. Any other callback (Composer's ``speed_monitor``, ``lr_monitor``, llm-foundry's
``hf_checkpointer`` ...) is passed to llm-foundry as written.
"""
from __future__ import annotations

from typing import Any, Optional

from composer_plugins.config.callback_args import DynamicLoadingConfig, PruningMonitorConfig, SampleLogConfig
from composer_plugins.config.guards import FiniteGuardConfig
from composer_plugins.config.typed import from_dict
from composer_plugins.config.wandb_visuals import WandbVisualsConfig
from composer_plugins.errors import ConfigError
from composer_plugins.pruning.config import LagrangianConfig, MaskLearningConfig

CALLBACK_SCHEMAS: dict[str, type] = {
    'mask_learning': MaskLearningConfig,
    'lagrangian': LagrangianConfig,
    'pruning_monitor': PruningMonitorConfig,
    'dynamic_loading': DynamicLoadingConfig,
    'sample_log': SampleLogConfig,
    'finite_guard': FiniteGuardConfig,
    'wandb_visuals': WandbVisualsConfig,
}
"""``{callback name: its arguments' dataclass}``, one entry per ``ENTRY_POINTS['callbacks']`` name
(:mod:`composer_plugins.registry`)."""


def typed_callbacks(callbacks: Optional[dict[str, Any]], path: str = 'callbacks') -> Optional[dict[str, Any]]:
    """``callbacks`` with each of ours as its checked dataclass; any other callback's mapping as given.

    Raises:
        ConfigError: naming ``callbacks.<name>.<key>`` (an unknown key, a wrong type or value), or
            ``callbacks.<name>`` whose value is neither a mapping nor null.
    """
    if callbacks is None:
        return None
    typed: dict[str, Any] = {}
    for name, args in callbacks.items():
        where = f'{path}.{name}'
        if name in CALLBACK_SCHEMAS:
            typed[name] = from_dict(CALLBACK_SCHEMAS[name], args, where)
        elif args is None or isinstance(args, dict):
            typed[name] = args
        else:
            raise ConfigError(f"{where}: got {args!r}; expected a mapping of the callback's arguments or null")
    return typed
