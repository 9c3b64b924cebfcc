"""Read a Composer checkpoint of a pruning run back into an HF model and its :class:`Pruner`.

Two layouts are supported:

* a monolithic ``.pt`` file (``torch.save`` of ``{'state': {...}, 'rng': ...}``);
* a sharded FSDP2 directory written by ``torch.distributed.checkpoint`` (a ``.metadata``
  file plus ``*.distcp`` shards), or composer's ``*.symlink`` file pointing at one. Only
  ``state.model`` and ``state.integrations`` are read from it, never the optimizer state.

``state['model']`` is the :class:`~composer_plugins.models.causal_lm.ShearCausalLM` state
dict (``model.<HF key>``, ``pruner.<...>``, ``pruner._extra_state``);
``state['integrations']['huggingface']`` holds the HF config and tokenizer files in the
layout of composer's ``HuggingFaceModel.get_metadata``, which composer's own helpers read.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch
from composer.models import HuggingFaceModel
from composer.models.huggingface import get_hf_config_from_composer_state_dict
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from composer_plugins.errors import ShearError
from composer_plugins.models.loading import empty_causal_lm
from composer_plugins.models.pruner import Pruner
from composer_plugins.pruning.shapes import ModelShape

log = logging.getLogger(__name__)

MODEL_PREFIX = 'model.'
PRUNER_PREFIX = 'pruner.'
PRUNER_EXTRA_STATE = 'pruner._extra_state'
_DCP_KEYS = frozenset({'state.model', 'state.integrations'})


def _resolve(path: Path) -> Path:
    """Follows composer's ``*.symlink`` files (a text file naming the sharded checkpoint directory)."""
    if path.is_file() and path.name.endswith('.symlink'):
        target = Path(path.read_text(encoding='utf-8').strip())
        return target if target.is_absolute() else (path.parent / target)
    return path


def _load_sharded(directory: Path) -> dict[str, Any]:
    """Loads ``state.model`` and ``state.integrations`` of a ``torch.distributed.checkpoint`` directory.

    The ``_EmptyStateDictLoadPlanner`` rebuilds the nested dict from the checkpoint's
    metadata (as ``dcp_to_torch_save`` does), restricted to the keys needed here, in one
    process, without a process group.
    """
    # The same private pieces torch.distributed.checkpoint.format_utils.dcp_to_torch_save uses;
    # the public dcp.load cannot fill an empty dict.
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    state_dict: dict[str, Any] = {}
    try:
        _load_state_dict(
            state_dict,
            storage_reader=FileSystemReader(str(directory)),
            planner=_EmptyStateDictLoadPlanner(keys=set(_DCP_KEYS)),
            no_dist=True,
        )
    except Exception as err:  # noqa: BLE001 - any reader failure means an unreadable checkpoint
        raise ShearError(f'cannot read the sharded checkpoint {directory}: {err}') from err
    return state_dict


def load_composer_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Loads a Composer checkpoint (monolithic file or sharded directory) on the CPU.

    Returns:
        The checkpoint dict; ``['state']['model']`` is the model state dict.

    Raises:
        ShearError: the path does not exist, or is not a readable Composer checkpoint.
    """
    original = Path(path).expanduser()
    if not original.exists():
        raise ShearError(f'checkpoint {original} does not exist')
    resolved = _resolve(original)
    if resolved.is_dir():
        if not (resolved / '.metadata').is_file():
            raise ShearError(f'{original} is a directory without a .metadata file: not a sharded checkpoint')
        log.info('Reading sharded checkpoint %s', resolved)
        checkpoint = _load_sharded(resolved)
    else:
        log.info('Reading checkpoint %s', resolved)
        try:
            # mmap: only what is read takes memory (a monolithic checkpoint also holds the optimizer state).
            checkpoint = torch.load(resolved, map_location='cpu', weights_only=False, mmap=True)
        except Exception as err:  # noqa: BLE001 - pickle / zip errors of every kind
            raise ShearError(f'cannot read checkpoint {original}: {err}') from err
    state = checkpoint.get('state') if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not isinstance(state.get('model'), dict):
        raise ShearError(f'{original} is not a Composer checkpoint (no state.model)')
    return checkpoint


def _rebuild_pruner(model_state: dict[str, Any], path: Path) -> Pruner:
    """A :class:`Pruner` from the pruner's extra state, with the saved ``log_alpha`` and multipliers."""
    extra = model_state.get(PRUNER_EXTRA_STATE)
    if extra is None:
        raise ShearError(
            f'{path} is not a pruning checkpoint: its model has no pruner state ({PRUNER_EXTRA_STATE}); '
            'it was saved from a model trained without model.pruning')
    try:
        source, target = ModelShape(**extra['source']), ModelShape(**extra['target'])
        pruner = Pruner(source, target, list(extra['mask_types']))
        pruner_state = {k[len(PRUNER_PREFIX):]: v for k, v in model_state.items() if k.startswith(PRUNER_PREFIX)}
        pruner.load_state_dict(pruner_state, strict=True)
    except ShearError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ShearError(f'{path}: cannot rebuild the pruner from its saved state: {err}') from err
    return pruner


def _load_tokenizer(hf_state: dict[str, Any]) -> Optional[PreTrainedTokenizerBase]:
    """The tokenizer saved in the checkpoint (composer's layout), or None when there is none."""
    if not hf_state.get('tokenizer'):
        return None
    with tempfile.TemporaryDirectory(prefix='shear-tokenizer-') as tmp:
        return HuggingFaceModel.load_huggingface_tokenizer_from_saved_state(hf_state, tokenizer_save_dir=tmp)


def _source_name(config: Any) -> str:
    name = getattr(config, '_name_or_path', '') or getattr(config, 'name_or_path', '')
    return str(name) if name else f'unknown {config.model_type} model'


def load_pruning_checkpoint(
    path: str | os.PathLike[str],
) -> tuple[PreTrainedModel, Pruner, Optional[PreTrainedTokenizerBase], str]:
    """Rebuilds the HF model, the pruner and the tokenizer of a pruning run's checkpoint.

    Args:
        path: a monolithic ``.pt`` file, a sharded checkpoint directory, or composer's
            ``*.symlink`` pointer to one.

    Returns:
        ``(hf_model, pruner, tokenizer_or_None, source_name)``: the float32 CPU model with
        the checkpoint's weights (plain HF norms, no mask hooks), the :class:`Pruner` with
        its learned ``log_alpha``, the saved tokenizer, and the HF config's
        ``_name_or_path`` (or ``unknown <model_type> model`` when it is empty).

    Raises:
        ShearError: missing or unreadable checkpoint, a checkpoint without pruner state,
            or weights that do not fit the saved config.
    """
    path = Path(path).expanduser()
    checkpoint = load_composer_state(path)
    state = checkpoint['state']
    model_state: dict[str, Any] = state['model']
    pruner = _rebuild_pruner(model_state, path)
    hf_state = (state.get('integrations') or {}).get('huggingface')
    if not hf_state or 'model' not in hf_state:
        raise ShearError(f'{path} has no Hugging Face metadata (state.integrations.huggingface); '
                         'cannot rebuild the model')

    tokenizer = _load_tokenizer(hf_state)
    # FSDP2 saves the dynamic class name (``FSDPLlamaForCausalLM``); rebuild from the config instead,
    # with empty parameters that take the checkpoint's tensors (assign): the weights are held once.
    hf_model = empty_causal_lm(get_hf_config_from_composer_state_dict(checkpoint))
    weights = {k[len(MODEL_PREFIX):]: v for k, v in model_state.items() if k.startswith(MODEL_PREFIX)}
    try:
        missing, unexpected = hf_model.load_state_dict(weights, strict=False, assign=True)
    except RuntimeError as err:
        raise ShearError(f'{path}: the saved weights do not fit the saved config: {err}') from err
    if getattr(hf_model.config, 'tie_word_embeddings', False):
        hf_model.tie_weights()
        missing = [key for key in missing if key != 'lm_head.weight']  # shares embed_tokens.weight
    if missing or unexpected:
        raise ShearError(f'{path}: the saved weights do not fit the saved config: '
                         f'missing {sorted(missing)}, unexpected {sorted(unexpected)}')
    hf_model.to(device='cpu', dtype=torch.float32).eval()

    shape = ModelShape.from_hf_config(hf_model.config)
    if shape != pruner.source:
        raise ShearError(f'{path}: the model has shape {shape} but the pruner was built for {pruner.source}')
    return hf_model, pruner, tokenizer, pruner.source_name or _source_name(hf_model.config)
