"""Turn a validated :class:`RunConfig` into the mapping llm-foundry's ``train`` expects."""
from __future__ import annotations

from typing import Any

from composer_plugins.config.schema import RunConfig
from composer_plugins.config.typed import to_dict

# Substrings of the Composer model's parameter names (see ShearCausalLM / Pruner).
LOG_ALPHA_PARAMS = 'pruner.l0_masks.'
MULTIPLIER_PARAMS = 'pruner.lagrangian.'


def to_foundry_config(run_cfg: RunConfig) -> dict[str, Any]:
    """llm-foundry train config; with pruning, three optimizer parameter groups.

    Groups: model weights (``lr``), log-alphas (``lag_lr``, no weight decay) and the
    Lagrange multipliers (``lag_lr``, no weight decay, ``maximize=True``: gradient
    ascent on the Lagrangian, paper eq. 3).
    """
    data = to_dict(run_cfg)
    if data.get('loggers'):
        data['loggers'] = _enabled_loggers(data['loggers'])
    optimizer = data['optimizer']
    lag_lr = optimizer.pop('lag_lr')
    if run_cfg.model.pruning is not None:
        optimizer['param_groups'] = [
            {'param_str_match': LOG_ALPHA_PARAMS, 'lr': lag_lr, 'weight_decay': 0.0},
            {'param_str_match': MULTIPLIER_PARAMS, 'lr': lag_lr, 'weight_decay': 0.0, 'maximize': True},
        ]
    return data


def _enabled_loggers(loggers: dict[str, Any]) -> dict[str, Any]:
    """Drop loggers whose block says ``enabled: false``; strip the key from the others.

    Lets every YAML carry a ready ``loggers.wandb`` block that one override
    (``loggers.wandb.enabled=true``) switches on. A disabled logger is not built at all:
    a W&B logger in ``disabled`` mode still breaks Composer's autoresume.
    """
    enabled = {}
    for name, cfg in loggers.items():
        cfg = dict(cfg or {})
        if cfg.pop('enabled', True):
            enabled[name] = cfg
    return enabled
