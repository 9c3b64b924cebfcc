"""The distillation loss (functional core, pure torch).

For a sequence, position ``i`` predicts token ``i + 1``; with teacher logits ``z_t`` and
student logits ``z_s`` at that position and temperature ``T``::

    p_t = softmax(z_t / T),   p_s = softmax(z_s / T)
    KD  = T^2 * mean_i  sum_v p_t(v) * (log p_t(v) - log p_s(v))          (1)

i.e. the forward KL(teacher || student) averaged over the positions whose next token is a
label (not ``-100``), scaled by ``T^2`` so that its gradients keep their size as ``T`` changes
(Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network", §2; the logit
KL of Minitron, Sreenivas et al. 2024, "LLM Pruning and Distillation in Practice", §3).
With ``top_k``, both distributions are restricted to the teacher's ``k`` largest logits at each
position and renormalised there, so (1) stays a true KL (zero when student = teacher).

The training loss is (Minitron, eq. of §3 with the LM term kept)::

    total = alpha * KD + (1 - alpha) * LM + (other terms, e.g. the Lagrangian)   (2)
"""
from __future__ import annotations

from typing import Mapping, Optional, Union

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
LossValue = Union[torch.Tensor, Mapping[str, torch.Tensor]]


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
) -> torch.Tensor:
    """Eq. (1): ``T^2 * KL(teacher || student)`` per predicted token, averaged.

    Args:
        student_logits, teacher_logits: ``[batch, seq, vocab]`` (same vocabulary).
        labels: ``[batch, seq]`` token ids, ``-100`` where no loss is taken (the HF convention;
            the logits at ``i`` are scored against ``labels[i + 1]``).
        temperature: ``T > 0``.
        top_k: restrict both distributions to the teacher's top-k logits (None: all).

    Returns:
        A scalar, fp32 or wider (zero when no position counts).
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f'student logits {tuple(student_logits.shape)} and teacher logits '
                         f'{tuple(teacher_logits.shape)} differ in shape')
    counted = (labels[:, 1:] != IGNORE_INDEX)
    with torch.no_grad():
        teacher = _at_least_fp32(teacher_logits[:, :-1]) / temperature
        top = None
        if top_k is not None and top_k < teacher.shape[-1]:
            top = teacher.topk(top_k, dim=-1).indices
            teacher = teacher.gather(-1, top)
        log_p_teacher = F.log_softmax(teacher, dim=-1)
        del teacher
        p_teacher = log_p_teacher.exp()
        teacher_term = (p_teacher * log_p_teacher).sum(-1)  # sum_v p_t log p_t
        del log_p_teacher
    student = student_logits[:, :-1]
    if top is not None:
        student = student.gather(-1, top)
    log_p_student = F.log_softmax(_at_least_fp32(student) / temperature, dim=-1)
    kl = teacher_term - (p_teacher * log_p_student).sum(-1)
    return temperature ** 2 * (kl * counted).sum() / counted.sum().clamp(min=1)


def _at_least_fp32(logits: torch.Tensor) -> torch.Tensor:
    """bf16 / fp16 logits upcast to fp32 for the softmaxes; fp32 and fp64 as they are."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def with_distillation(loss: LossValue, kd: torch.Tensor, alpha: float) -> dict[str, torch.Tensor]:
    """Eq. (2): the model's loss with the KD term mixed in.

    Args:
        loss: what the model's ``loss`` returned: the LM loss, or a mapping with ``total``,
            ``lm`` and further terms (the pruning run's ``lagrangian``).
        kd: eq. (1).
        alpha: the KD weight in [0, 1].

    Returns:
        ``{'total', 'lm', 'kd', ...further terms}``; Composer backpropagates ``total`` and
        logs every entry as ``loss/train/<key>``.
    """
    if isinstance(loss, Mapping):
        lm = loss['lm']
        extra = {key: value for key, value in loss.items() if key not in ('total', 'lm')}
    else:
        lm, extra = loss, {}
    total = alpha * kd + (1.0 - alpha) * lm
    for value in extra.values():
        total = total + value
    return {'total': total, 'lm': lm, 'kd': kd, **extra}
