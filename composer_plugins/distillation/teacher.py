"""The frozen teacher: load it, check it against the student, place it beside the student.

The teacher is never a submodule of the Composer model: it is not in the checkpoint, not in
the optimizer and not counted as the student's parameters. It is placed at fit start on the
student's device and, when the student is sharded with FSDP2, sharded the same way (each
decoder layer and the root a ``fully_shard`` unit on the student's mesh).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Optional

import torch
from torch import nn
from transformers import AutoConfig, PreTrainedModel

from composer_plugins.errors import ConfigError
from composer_plugins.models.loading import load_causal_lm
from composer_plugins.models.tiny import tiny_config
from data_prep.tokenizers import load_tokenizer

log = logging.getLogger(__name__)

TOKENIZER_FILES = ('tokenizer.json', 'tokenizer_config.json', 'vocab.json', 'tokenizer.model')


def _config_of(name: str) -> Any:
    if name.startswith('tiny-'):
        return tiny_config(name)
    return AutoConfig.from_pretrained(os.path.expanduser(name))


def _has_tokenizer(name: str) -> bool:
    directory = os.path.expanduser(name)
    return not os.path.isdir(directory) or any(os.path.isfile(os.path.join(directory, f)) for f in TOKENIZER_FILES)


def check_teacher_matches_student(teacher: str, student: str, student_tokenizer: Optional[str]) -> None:
    """Same vocabulary size, and the same token-to-id map where both tokenizers can be read.

    Raises:
        ConfigError: naming both models and what differs.
    """
    teacher_vocab, student_vocab = _config_of(teacher).vocab_size, _config_of(student).vocab_size
    if teacher_vocab != student_vocab:
        raise ConfigError(f'distillation.teacher: teacher {teacher!r} has a vocabulary of {teacher_vocab} '
                          f'tokens, student {student!r} of {student_vocab}; KD compares next-token '
                          'distributions, so both need the same tokenizer')
    if student_tokenizer is None or teacher.startswith('tiny-') or not _has_tokenizer(teacher):
        return
    teacher_ids, student_ids = load_tokenizer(teacher).get_vocab(), load_tokenizer(student_tokenizer).get_vocab()
    if teacher_ids != student_ids:
        differing = sorted(set(teacher_ids.items()) ^ set(student_ids.items()), key=str)[:3]
        raise ConfigError(f'distillation.teacher: the tokenizer of teacher {teacher!r} differs from the '
                          f"student's ({student_tokenizer!r}, model {student!r}): "
                          f'{len(teacher_ids)} vs {len(student_ids)} tokens, e.g. {differing}')


def teacher_dtype(precision: str) -> torch.dtype:
    """The teacher's weights: bf16 under ``amp_bf16`` (it only runs forward, so half the memory),
    else fp32 (autocast still runs its matmuls in the run's precision)."""
    return torch.bfloat16 if precision == 'amp_bf16' else torch.float32


def load_teacher(name: str, dtype: torch.dtype, attn_implementation: str = 'sdpa') -> PreTrainedModel:
    """The teacher's HF model in eval mode, every parameter frozen, weights in ``dtype``."""
    teacher = load_causal_lm(name, pretrained=True, attn_implementation=attn_implementation, torch_dtype=dtype)
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def place_teacher(teacher: PreTrainedModel, student: nn.Module) -> None:
    """Move the teacher to the student's device; shard it like the student under FSDP2.

    Args:
        teacher: from :func:`load_teacher`.
        student: the (possibly FSDP2-sharded) Composer model.
    """
    param = next(student.parameters())
    teacher.to(device=param.device)
    mesh = getattr(param, 'device_mesh', None)
    if mesh is None:
        return
    from torch.distributed.fsdp import fully_shard

    for layer in teacher.get_decoder().layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(teacher, mesh=mesh)
    log.info('distillation: teacher sharded with FSDP2 over %d ranks', mesh.size())
