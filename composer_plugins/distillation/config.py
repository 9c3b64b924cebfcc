"""Typed ``distillation:`` block of a run YAML (pure Python; no torch import)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Optional

from composer_plugins.config.model_names import check_model_name
from composer_plugins.errors import ConfigError

SOURCE_TEACHER = 'source'
PRUNING_RECORD = 'pruning.json'  # written by the export next to the pruned model


@dataclass
class DistillationConfig:
    """``distillation:``: train the student against a frozen teacher as well as the data.

    loss = alpha * KD + (1 - alpha) * LM, with KD = T^2 * KL(teacher || student)
    (:mod:`composer_plugins.distillation.loss`, eqs. 1-2).

    Attributes:
        teacher: a local HF directory, a hub id (where a network exists), or ``source``: the
            model this run prunes (``model.source`` of a pruning run) or, for a run that trains
            an exported model, the source recorded in its ``pruning.json``.
        alpha: weight of the KD term, in [0, 1] (0: plain LM loss, the teacher only logged).
        temperature: T > 0 of both softmaxes.
        top_k: compare the distributions on the teacher's k largest logits only (None: all).
    """
    teacher: str
    alpha: float = 0.5
    temperature: float = 1.0
    top_k: Optional[int] = None

    def validate(self, path: str) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f'{path}.alpha: got {self.alpha}; expected a KD weight in [0, 1]')
        if not self.temperature > 0.0:
            raise ConfigError(f'{path}.temperature: got {self.temperature}; expected T > 0')
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f'{path}.top_k: got {self.top_k}; expected a positive number of logits or null')

    def resolve_teacher(self, student_source: str, prunes: bool, path: str) -> str:
        """The teacher as a loadable name: ``source`` resolved, a directory checked.

        Args:
            student_source: ``model.source``.
            prunes: whether the run carries ``model.pruning`` (then ``source`` is the student's source).
            path: the YAML path of this block, for messages.
        """
        teacher = self.teacher
        if teacher == SOURCE_TEACHER:
            teacher = student_source if prunes else _recorded_source(student_source, path)
        check_model_name(teacher, f'{path}.teacher', f'teacher directory {teacher!r} does not exist '
                                                     f'(student: model.source {student_source!r})')
        return teacher


def _recorded_source(student_source: str, path: str) -> str:
    """The source model named in an exported model's ``pruning.json``."""
    record = os.path.join(os.path.expanduser(student_source), PRUNING_RECORD)
    if not os.path.isfile(record):
        raise ConfigError(
            f'{path}.teacher: {SOURCE_TEACHER!r} means the model that was pruned, but model.source '
            f'{student_source!r} is neither a pruning run nor an export with {PRUNING_RECORD}; '
            'name the teacher directory instead',
        )
    with open(record) as f:
        source = json.load(f).get('source_model')
    if not source:
        raise ConfigError(f'{path}.teacher: {record} names no source_model; name the teacher directory instead')
    return source
