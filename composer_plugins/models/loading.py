"""Load a Hugging Face causal LM from a local directory, a hub id or a named tiny config."""
from __future__ import annotations

import logging
import os
from typing import Any, Optional

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from composer_plugins.errors import ShearError
from composer_plugins.models.adapters import ADAPTERS
from composer_plugins.models.tiny import tiny_config

log = logging.getLogger(__name__)



def load_causal_lm(
    source: str,
    pretrained: bool = True,
    config_overrides: Optional[dict[str, Any]] = None,
    attn_implementation: str = 'sdpa',
    torch_dtype: torch.dtype = torch.float32,
) -> PreTrainedModel:
    """Build the HF model named by ``source``.

    Args:
        source: local HF directory, hub id, or ``tiny-llama`` / ``tiny-llama-gqa`` /
            ``tiny-mistral`` / ``tiny-qwen2``.
        pretrained: load the weights (else initialise from the config, seeded by the caller).
        config_overrides: config attributes to change before building.
        attn_implementation: ``sdpa`` (default), ``eager`` or ``flash_attention_2``.
        torch_dtype: parameter dtype.
    """
    overrides = dict(config_overrides or {})
    if source.startswith('tiny-'):
        config = tiny_config(source)
        pretrained = False
    else:
        try:
            config = AutoConfig.from_pretrained(os.path.expanduser(source))
        except (OSError, ValueError) as err:
            raise ShearError(f'model.source {source!r}: cannot load a config ({err})') from err
    if config.model_type not in ADAPTERS:
        raise ShearError(
            f'model.source {source!r}: architecture {config.model_type!r} is not supported; '
            f'expected one of {", ".join(sorted(ADAPTERS))}',
        )
    for key, value in overrides.items():
        if not hasattr(config, key):
            raise ShearError(f'model.config_overrides.{key}: {config.model_type} configs have no such attribute')
        setattr(config, key, value)
    config._attn_implementation = attn_implementation
    if pretrained:
        log.info('Loading pretrained weights from %s', source)
        model = AutoModelForCausalLM.from_pretrained(
            os.path.expanduser(source),
            config=config,
            torch_dtype=torch_dtype,
            attn_implementation=attn_implementation,
        )
    else:
        log.info('Initialising %s (%s) from its config', source, config.model_type)
        model = AutoModelForCausalLM.from_config(
            config, torch_dtype=torch_dtype, attn_implementation=attn_implementation,
        )
    return model


def empty_causal_lm(config: Any, model_class: Optional[type] = None) -> PreTrainedModel:
    """A causal LM of ``config`` whose parameters are on the meta device (no memory, no init); buffers are real.

    For code that then assigns every parameter (``load_state_dict(..., assign=True)``, the export):
    only the tensors assigned so far take memory, so a model is never held twice.
    ``model_class``: the class to build (default: ``AutoModelForCausalLM`` for the config).
    """
    from accelerate import init_empty_weights
    from transformers.modeling_utils import no_init_weights

    with no_init_weights(), init_empty_weights(include_buffers=False):
        if model_class is None:
            return AutoModelForCausalLM.from_config(config)
        return model_class(config)
