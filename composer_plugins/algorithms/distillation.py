"""Knowledge distillation as a Composer algorithm (registered as ``distillation``).

A run YAML's ``distillation:`` block (:class:`~composer_plugins.distillation.config.DistillationConfig`)
becomes this algorithm. At ``Event.FIT_START`` it places the frozen teacher beside the student
(same device; FSDP2-sharded like it). At ``Event.AFTER_LOSS``, for every training microbatch,
it runs the teacher on the same inputs without gradients, in the run's precision, and
replaces the loss with ``alpha * KD + (1 - alpha) * LM (+ the Lagrangian when pruning)``
(:func:`~composer_plugins.distillation.loss.with_distillation`). Composer backpropagates
``total`` and logs ``loss/train/kd`` and ``loss/train/lm`` every batch. Evaluation, and so
the per-domain losses that dynamic loading reads, stay plain LM cross-entropy.

The checkpoint records which teacher it was (and alpha, T, top_k), never its weights; a
resume with another teacher or other settings is an error.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

import torch
from composer.core import Algorithm, Event, State, get_precision_context
from composer.loggers import Logger

from composer_plugins.config.typed import from_dict, to_dict
from composer_plugins.distillation.config import DistillationConfig
from composer_plugins.distillation.loss import kd_loss, with_distillation
from composer_plugins.distillation.teacher import (
    check_teacher_matches_student,
    load_teacher,
    place_teacher,
    teacher_dtype,
)
from composer_plugins.errors import ConfigError, ShearError

log = logging.getLogger(__name__)

STATE_VERSION = 1
NAME = 'distillation'


class Distillation(Algorithm):
    """Adds the KD term of a frozen teacher to the training loss.

    Args:
        teacher: the teacher, already resolved (a directory, hub id or tiny config; not ``source``).
        student: ``model.source``, for the vocabulary check and messages.
        student_tokenizer: ``tokenizer.name``, for the tokenizer check.
        precision: the run's ``precision`` (the teacher's weights are bf16 under ``amp_bf16``).
        **kwargs: ``alpha``, ``temperature``, ``top_k`` of :class:`DistillationConfig`.
    """

    def __init__(self, teacher: str, student: str, student_tokenizer: Optional[str] = None,
                 precision: str = 'fp32', **kwargs: Any) -> None:
        self.config: DistillationConfig = from_dict(DistillationConfig, {'teacher': teacher, **kwargs}, NAME)
        check_teacher_matches_student(teacher, student, student_tokenizer)
        self.teacher = load_teacher(teacher, teacher_dtype(precision))
        log.info('distillation: teacher %s (%.1fM parameters), alpha %g, T %g, top_k %s', teacher,
                 sum(p.numel() for p in self.teacher.parameters()) / 1e6, self.config.alpha,
                 self.config.temperature, self.config.top_k)

    def match(self, event: Event, state: State) -> bool:
        return event in (Event.FIT_START, Event.AFTER_LOSS)

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.FIT_START:
            student_vocab = state.model.model.config.vocab_size
            if student_vocab != self.teacher.config.vocab_size:
                raise ConfigError(f'distillation.teacher: teacher {self.config.teacher!r} has a vocabulary of '
                                  f'{self.teacher.config.vocab_size} tokens, the student model {student_vocab}')
            place_teacher(self.teacher, state.model)
            return
        batch = state.batch
        with torch.no_grad(), get_precision_context(state.precision, state.precision_config):
            teacher_logits = self.teacher(input_ids=batch['input_ids'], attention_mask=batch.get('attention_mask'),
                                          use_cache=False).logits
        kd = kd_loss(state.outputs['logits'], teacher_logits, batch['labels'],
                     self.config.temperature, self.config.top_k)
        state.loss = with_distillation(state.loss, kd, self.config.alpha)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), 'version': STATE_VERSION, 'config': to_dict(self.config)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get('version') != STATE_VERSION:
            raise ShearError(f'{NAME}: checkpoint state version {state.get("version")} != {STATE_VERSION}')
        if state.get('config') != to_dict(self.config):
            raise ShearError(f'{NAME}: the checkpoint was trained with {state.get("config")}, this run has '
                             f'{to_dict(self.config)}; resume with the same teacher and settings')
