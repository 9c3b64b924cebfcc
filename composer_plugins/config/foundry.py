"""Turn a validated :class:`RunConfig` into the mapping llm-foundry's ``train`` expects."""
from __future__ import annotations

from typing import Any

from composer_plugins.config.schema import RunConfig
from composer_plugins.config.typed import to_dict


def to_foundry_config(run_cfg: RunConfig) -> dict[str, Any]:
    """The llm-foundry train config (the optimizer is the weights' only; see the pruning callbacks).

    The ``distillation`` block becomes the ``distillation`` algorithm, its teacher resolved.
    Every run gets the ``finite_guard`` callback (a non-finite loss stops it, and no checkpoint
    with non-finite weights is written); ``callbacks.finite_guard`` only tunes it.
    """
    data = to_dict(run_cfg)
    data['callbacks'] = {**(data.get('callbacks') or {})}
    data['callbacks']['finite_guard'] = data['callbacks'].get('finite_guard') or {}
    if data.get('loggers'):
        data['loggers'] = _enabled_loggers(data['loggers'])
    distillation = data.pop('distillation', None)
    if distillation is not None:
        kd = run_cfg.distillation
        distillation['teacher'] = kd.resolve_teacher(run_cfg.model.source, run_cfg.model.pruning is not None,
                                                     'distillation')
        data['algorithms'] = {**(data.get('algorithms') or {}), 'distillation': {
            **distillation, 'student': run_cfg.model.source, 'student_tokenizer': run_cfg.tokenizer.name,
            'precision': run_cfg.precision,
        }}
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
