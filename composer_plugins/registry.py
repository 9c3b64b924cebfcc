"""This package's components in llm-foundry's registries, through Python entry points.

:data:`ENTRY_POINTS` is the one table: ``setup.py`` installs it as the ``llmfoundry_<registry>``
entry-point groups (llm-foundry's README, "Python entrypoints"), so llm-foundry's own
``scripts/train/train.py``, ``train_from_yaml`` or any other entry point sees
``model.name: shear_causal_lm``, ``tokenizer.name: byte-level``, the ``domain_mixture``
loader and the callbacks with no import by hand. :func:`register_all` registers the same
table imperatively, for code run from a checkout that is not installed.

This module imports nothing at module level: ``setup.py`` reads the table from it.
"""
from __future__ import annotations

import importlib
import logging

log = logging.getLogger(__name__)

ENTRY_POINTS: dict[str, dict[str, str]] = {
    'models': {'shear_causal_lm': 'composer_plugins.models.causal_lm:ShearCausalLM'},
    'callbacks': {
        'pruning_monitor': 'composer_plugins.callbacks.pruning_monitor:PruningMonitor',
        'mask_learning': 'composer_plugins.callbacks.mask_learning:MaskLearning',
        'lagrangian': 'composer_plugins.callbacks.lagrangian:LagrangianAscent',
        'dynamic_loading': 'composer_plugins.callbacks.dynamic_loading:DynamicLoading',
        'sample_log': 'composer_plugins.callbacks.sample_log:SampleLog',
        'finite_guard': 'composer_plugins.callbacks.finite_guard:FiniteGuard',
        'wandb_visuals': 'composer_plugins.callbacks.wandb_visuals:WandbVisuals',
    },
    'algorithms': {'distillation': 'composer_plugins.algorithms.distillation:Distillation'},
    'loggers': {
        'jsonl': 'composer_plugins.loggers.jsonl_metrics:JsonlMetricsLogger',
        'console_bar': 'composer_plugins.console_bar:BarConsoleLogger',  # added with a progress bar
    },
    'dataloaders': {'domain_mixture': 'composer_plugins.data.mixture_loader:build_domain_mixture_dataloader'},
    'optimizers': {'adamw': 'torch.optim:AdamW'},  # supports per-group maximize (the multipliers' ascent)
    'tokenizers': {'byte-level': 'data_prep.byte_tokenizer:ByteLevelTokenizer'},
    'config_transforms': {'shear_run': 'composer_plugins.config.foundry:shear_run_transform'},
}
"""``{llm-foundry registry: {name: 'module:attribute'}}``."""


def entry_point_groups() -> dict[str, list[str]]:
    """:data:`ENTRY_POINTS` in ``setup(entry_points=...)`` form: ``{'llmfoundry_models': ['name = module:attr']}``."""
    return {f'llmfoundry_{registry}': [f'{name} = {target}' for name, target in names.items()]
            for registry, names in ENTRY_POINTS.items()}


def load_target(target: str) -> object:
    """The object a ``'module:attribute'`` entry names."""
    module, _, attribute = target.partition(':')
    return getattr(importlib.import_module(module), attribute)


def register_all() -> None:
    """Register :data:`ENTRY_POINTS` by hand (idempotent: a name already registered is left alone)."""
    from llmfoundry import registry

    for registry_name, names in ENTRY_POINTS.items():
        llmfoundry_registry = getattr(registry, registry_name)
        for name, target in names.items():
            if name not in llmfoundry_registry.get_all():
                llmfoundry_registry.register(name, func=load_target(target))
    log.debug('Registered composer_plugins components in llm-foundry registries')
