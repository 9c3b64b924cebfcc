"""Register this package's components in llm-foundry's registries.

After :func:`register_all`, a YAML can name them like any llm-foundry component:
``model.name: shear_causal_lm``, ``tokenizer.name: byte-level``.
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)
_registered = False


def register_all() -> None:
    """Idempotently register models, tokenizers, dataloaders, callbacks and algorithms."""
    global _registered
    if _registered:
        return
    import torch
    from llmfoundry import registry

    from composer_plugins.algorithms.distillation import Distillation
    from composer_plugins.callbacks.dynamic_loading import DynamicLoading
    from composer_plugins.callbacks.finite_guard import FiniteGuard
    from composer_plugins.callbacks.lagrangian import LagrangianAscent
    from composer_plugins.callbacks.mask_learning import MaskLearning
    from composer_plugins.callbacks.pruning_monitor import PruningMonitor
    from composer_plugins.callbacks.sample_log import SampleLog
    from composer_plugins.data.mixture_loader import build_domain_mixture_dataloader
    from composer_plugins.loggers.jsonl_metrics import JsonlMetricsLogger

    from composer_plugins.models.tokenizers import NAMED_TOKENIZERS
    from composer_plugins.models.causal_lm import ShearCausalLM

    registry.models.register('shear_causal_lm', func=ShearCausalLM)
    registry.callbacks.register('pruning_monitor', func=PruningMonitor)
    registry.callbacks.register('mask_learning', func=MaskLearning)
    registry.callbacks.register('lagrangian', func=LagrangianAscent)
    registry.callbacks.register('dynamic_loading', func=DynamicLoading)
    registry.callbacks.register('sample_log', func=SampleLog)
    registry.callbacks.register('finite_guard', func=FiniteGuard)
    registry.algorithms.register('distillation', func=Distillation)
    registry.loggers.register('jsonl', func=JsonlMetricsLogger)
    registry.dataloaders.register('domain_mixture', func=build_domain_mixture_dataloader)
    if 'adamw' not in registry.optimizers:
        registry.optimizers.register('adamw', func=torch.optim.AdamW)  # supports per-group maximize
    for name, tokenizer_cls in NAMED_TOKENIZERS.items():
        registry.tokenizers.register(name, func=tokenizer_cls)
    _registered = True
    log.debug('Registered composer_plugins components in llm-foundry registries')
