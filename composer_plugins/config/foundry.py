"""The recipe's llm-foundry config transform, and the validated :class:`RunConfig` as the mapping llm-foundry's
``train`` builds the Trainer from."""
from __future__ import annotations

from typing import Any

from composer_plugins.config.schema import RunConfig
from composer_plugins.config.typed import from_dict, to_dict

MODEL_NAME = 'shear_causal_lm'

WANDB_LOGGER = 'wandb'
"""llm-foundry's registry name of Composer's ``WandBLogger``."""
WANDB_VISUALS = 'wandb_visuals'
"""The callback that logs images and tables to W&B (:mod:`composer_plugins.callbacks.wandb_visuals`)."""


def shear_run_transform(cfg: dict[str, Any]) -> dict[str, Any]:
    """llm-foundry config transform (entry point ``llmfoundry_config_transforms``): a ``shear_causal_lm`` run's
    config validated (:class:`RunConfig`), its run prepared (:func:`~composer_plugins.run_setup.prepare_run`)
    and converted (:func:`to_foundry_config`); any other model's config is returned as it is.

    llm-foundry applies every registered transform in ``train``, so ``train_from_yaml``, its
    ``scripts/train/train.py``, ``train.py`` and ``shear train`` all run the same checks. A bad
    config raises one :class:`~composer_plugins.errors.ConfigError` naming the key.
    """
    if (cfg.get('model') or {}).get('name') != MODEL_NAME:
        return cfg
    from composer_plugins.run_setup import prepare_run

    run_cfg = from_dict(RunConfig, {key: value for key, value in cfg.items() if key != 'variables'})
    return to_foundry_config(prepare_run(run_cfg))


def to_foundry_config(run_cfg: RunConfig) -> dict[str, Any]:
    """The llm-foundry train config (the optimizer is the weights' only; see the pruning callbacks).

    The ``distillation`` block becomes the ``distillation`` algorithm, its teacher resolved.
    Every run gets the ``finite_guard`` callback (a non-finite loss stops it, and no checkpoint
    with non-finite weights is written); ``callbacks.finite_guard`` only tunes it. A run with an
    enabled ``wandb`` logger also gets ``wandb_visuals`` (images and tables for W&B;
    ``callbacks.wandb_visuals`` tunes it), and a run without one does not.
    """
    data = to_dict(run_cfg)
    data['callbacks'] = {**(data.get('callbacks') or {})}
    data['callbacks']['finite_guard'] = data['callbacks'].get('finite_guard') or {}
    if data.get('loggers'):
        data['loggers'] = _enabled_loggers(data['loggers'])
    if WANDB_LOGGER in (data.get('loggers') or {}):
        data['loggers'][WANDB_LOGGER] = _wandb_offline_tables(data['loggers'][WANDB_LOGGER])
        data['callbacks'][WANDB_VISUALS] = data['callbacks'].get(WANDB_VISUALS) or {}
    else:
        data['callbacks'].pop(WANDB_VISUALS, None)
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


def _wandb_offline_tables(wandb_cfg: dict[str, Any]) -> dict[str, Any]:
    """``init_kwargs.settings.allow_offline_artifacts`` defaults to false (an explicit value wins).

    With wandb 0.18 in offline mode and that setting true (wandb's default), every logged
    ``wandb.Table`` (the ``wandb_visuals`` tables) asks the server for its version first, which
    retries for minutes on a machine without network; false logs the table as a plain file of
    the offline run (``wandb sync`` uploads it later). Online runs behave the same either way.
    """
    init_kwargs = dict(wandb_cfg.get('init_kwargs') or {})
    settings = dict(init_kwargs.get('settings') or {})
    settings.setdefault('allow_offline_artifacts', False)
    return {**wandb_cfg, 'init_kwargs': {**init_kwargs, 'settings': settings}}
