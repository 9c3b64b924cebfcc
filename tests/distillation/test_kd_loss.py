"""The KD term (eq. 1) and how it joins the LM loss (eq. 2), in float64."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from composer_plugins.distillation.loss import kd_loss, with_distillation
from composer_plugins.models.loading import load_causal_lm


def _logits(seed: int, shape=(2, 6, 11)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(*shape, generator=generator, dtype=torch.float64)


def _labels(seed: int = 0) -> torch.Tensor:
    labels = torch.randint(0, 11, (2, 6), generator=torch.Generator().manual_seed(seed))
    labels[0, 4] = labels[1, 1] = -100
    return labels


def _reference(student, teacher, labels, temperature, top_k=None):
    """KL(p_t || p_s) with torch's kl_div, position by position (the loop the vectorised form replaces)."""
    terms = []
    for b in range(student.shape[0]):
        for i in range(student.shape[1] - 1):
            if labels[b, i + 1] == -100:
                continue
            s, t = student[b, i] / temperature, teacher[b, i] / temperature
            if top_k is not None:
                top = t.topk(top_k).indices
                s, t = s[top], t[top]
            terms.append(F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction='sum'))
    return temperature ** 2 * torch.stack(terms).mean()


@pytest.mark.parametrize('temperature,top_k', [(1.0, None), (2.0, None), (0.5, 4)])
def test_kd_equals_the_forward_kl_on_counted_positions(temperature, top_k):
    student, teacher, labels = _logits(1), _logits(2), _labels()
    got = kd_loss(student, teacher, labels, temperature, top_k)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(_reference(student, teacher, labels, temperature, top_k).item(), rel=1e-12)
    assert got.item() > 0.1


def test_kd_is_zero_when_student_equals_teacher_and_ignores_masked_positions():
    logits, labels = _logits(3), _labels()
    assert kd_loss(logits, logits.clone(), labels, 2.0).item() == 0.0
    assert kd_loss(logits, logits.clone(), labels, 1.0, top_k=3).item() == 0.0
    other = logits.clone()
    other[0, 3] += 5 * torch.randn(11, dtype=torch.float64)  # predicts labels[0, 4] = -100: not counted
    assert kd_loss(logits, other, labels).item() == 0.0
    other[1, 3] += 1.0 + torch.arange(11, dtype=torch.float64)  # a counted position
    assert kd_loss(logits, other, labels).item() > 0.0


def test_kd_gradient_is_student_softmax_minus_teacher_softmax():
    """d KD / d z_s = T (p_s - p_t) / n per counted position (the T^2 and the 1/T of the softmax)."""
    student, teacher, labels = _logits(4).requires_grad_(), _logits(5), _labels()
    temperature = 2.0
    kd_loss(student, teacher, labels, temperature).backward()
    counted = labels[:, 1:] != -100
    expected = torch.zeros_like(student)
    expected[:, :-1] = temperature * (F.softmax(student.detach()[:, :-1] / temperature, -1)
                                      - F.softmax(teacher[:, :-1] / temperature, -1))
    expected[:, :-1] *= counted[..., None] / counted.sum()
    torch.testing.assert_close(student.grad, expected, rtol=1e-10, atol=1e-12)


def test_alpha_zero_gives_exactly_the_lm_loss_and_gradients():
    torch.manual_seed(0)
    model = load_causal_lm('tiny-llama', pretrained=False, torch_dtype=torch.float64)
    input_ids = torch.randint(0, 300, (2, 16))
    teacher_logits = _logits(6, (2, 16, model.config.vocab_size))

    def loss_and_grads(alpha=None):
        model.zero_grad(set_to_none=True)
        out = model(input_ids=input_ids, labels=input_ids)
        loss = out.loss
        if alpha is not None:
            loss = with_distillation(out.loss, kd_loss(out.logits, teacher_logits, input_ids), alpha)['total']
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    plain_loss, plain_grads = loss_and_grads()
    kd_loss_value, kd_grads = loss_and_grads(alpha=0.0)
    assert torch.equal(plain_loss, kd_loss_value)
    assert all(torch.equal(a, b) for a, b in zip(plain_grads, kd_grads))
    _, mixed_grads = loss_and_grads(alpha=0.5)
    assert not all(torch.equal(a, b) for a, b in zip(plain_grads, mixed_grads))


def test_with_distillation_keeps_the_lagrangian_outside_the_mix():
    lm, lagrangian, kd = torch.tensor(3.0), torch.tensor(0.25), torch.tensor(1.0)
    out = with_distillation({'total': lm + lagrangian, 'lm': lm, 'lagrangian': lagrangian}, kd, alpha=0.75)
    assert out.keys() == {'total', 'lm', 'kd', 'lagrangian'}
    assert out['total'].item() == pytest.approx(0.75 * 1.0 + 0.25 * 3.0 + 0.25)
    assert with_distillation(lm, kd, 1.0)['total'].item() == 1.0
