"""Cost of distillation: a KD training step vs a plain step of the same student, side by side.

Student: SmolLM2-135M pruned to the shape of ``yamls/prune.yaml`` (24 layers, hidden 448, 6 / 2
heads, FFN 1280: 74.3M parameters); teacher: the SmolLM2-135M shape (134.5M). Both randomly
initialised (time and memory do not depend on the values), fp32, batch 4 x 256 by default. The
KD step is what the ``distillation`` algorithm adds to a Composer step: the teacher's forward
without gradients, eq. (1) of ``composer_plugins/distillation/loss.py`` and eq. (2) with
``alpha`` 0.5; both steps run AdamW. The kinds alternate in one process so that machine noise
hits both; the teacher's forward alone is timed too. Peak memory is each kind's ``VmHWM`` in a
child process of its own running the same steps. Prints one JSON line.

``--student source`` gives the student the teacher's shape: the pruning stage's case, where the
teacher is the source and the student the source under masks. ``--top-k K`` restricts eq. (1) to
the teacher's K largest logits (``distillation.top_k``).

    python benchmarks/kd_overhead.py [--steps 10] [--batch 4] [--seq 256] [--student pruned|source] [--top-k K]
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time

import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from composer_plugins.distillation.loss import kd_loss, with_distillation

SMOLLM2 = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
               num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True, rope_theta=100000.0)
STUDENT = dict(SMOLLM2, hidden_size=448, intermediate_size=1280, num_hidden_layers=24, num_attention_heads=6,
               num_key_value_heads=2, head_dim=64)
STUDENTS = {'pruned': STUDENT, 'source': SMOLLM2}
ALPHA = 0.5


def _model(fields: dict) -> torch.nn.Module:
    return AutoModelForCausalLM.from_config(LlamaConfig(**fields), attn_implementation='sdpa')


def _step(student, optimizer, batch, teacher=None, top_k=None) -> None:
    optimizer.zero_grad(set_to_none=True)
    out = student(**batch)
    loss = out.loss
    if teacher is not None:
        with torch.no_grad():
            teacher_logits = teacher(input_ids=batch['input_ids']).logits
        kd = kd_loss(out.logits, teacher_logits, batch['labels'], top_k=top_k)
        loss = with_distillation(loss, kd, ALPHA)['total']
    loss.backward()
    optimizer.step()


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _setup(batch_size: int, seq: int, student_shape: str):
    torch.manual_seed(0)
    student, teacher = _model(STUDENTS[student_shape]), _model(SMOLLM2).eval().requires_grad_(False)
    ids = torch.randint(0, SMOLLM2['vocab_size'], (batch_size, seq))
    return student, teacher, {'input_ids': ids, 'labels': ids}


def _peak_rss_of(kind: str, args: argparse.Namespace) -> int:
    """Bytes: ``VmHWM`` of a child that runs ``--steps`` steps of one kind."""
    out = subprocess.run([sys.executable, __file__, '--child', kind, '--steps', str(args.steps),
                          '--batch', str(args.batch), '--seq', str(args.seq), '--student', args.student,
                          *(['--top-k', str(args.top_k)] if args.top_k else [])],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) * 1024


def _child(kind: str, args: argparse.Namespace) -> None:
    student, teacher, batch = _setup(args.batch, args.seq, args.student)
    teacher = teacher if kind == 'kd' else None
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)
    for _ in range(args.steps):
        _step(student, optimizer, batch, teacher, args.top_k)
    with open('/proc/self/status') as status:
        print(next(line.split()[1] for line in status if line.startswith('VmHWM:')))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--steps', type=int, default=10)
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--seq', type=int, default=256)
    parser.add_argument('--student', choices=sorted(STUDENTS), default='pruned',
                        help='pruned: the prune.yaml shape (default); source: the teacher\'s own shape')
    parser.add_argument('--top-k', type=int, default=None, help='eq. (1) over the teacher\'s top-k logits')
    parser.add_argument('--child', choices=['plain', 'kd'], help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.child:
        _child(args.child, args)
        return

    student, teacher, batch = _setup(args.batch, args.seq, args.student)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)
    for _ in range(2):  # warm-up
        _step(student, optimizer, batch)
        _step(student, optimizer, batch, teacher, args.top_k)
    plain_times, kd_times, teacher_times = [], [], []
    for _ in range(args.steps):
        plain_times.append(_timed(lambda: _step(student, optimizer, batch)))
        kd_times.append(_timed(lambda: _step(student, optimizer, batch, teacher, args.top_k)))
        with torch.no_grad():
            teacher_times.append(_timed(lambda: teacher(input_ids=batch['input_ids'])))
    plain, kd, forward = (statistics.median(t) for t in (plain_times, kd_times, teacher_times))
    peak_plain, peak_kd = _peak_rss_of('plain', args), _peak_rss_of('kd', args)
    print(json.dumps({  # the benchmark's output is this one JSON line
        'student_params_m': round(sum(p.numel() for p in student.parameters()) / 1e6, 1),
        'teacher_params_m': round(sum(p.numel() for p in teacher.parameters()) / 1e6, 1),
        'student': args.student, 'top_k': args.top_k, 'batch': args.batch, 'seq': args.seq, 'steps': args.steps,
        'threads': torch.get_num_threads(),
        'plain_step_s': round(plain, 3), 'kd_step_s': round(kd, 3), 'kd_over_plain': round(kd / plain, 3),
        'teacher_forward_s': round(forward, 3), 'teacher_forward_over_plain_step': round(forward / plain, 3),
        'peak_rss_plain_gib': round(peak_plain / 2 ** 30, 2), 'peak_rss_kd_gib': round(peak_kd / 2 ** 30, 2),
        'peak_rss_kd_over_plain': round(peak_kd / peak_plain, 3),
    }))


if __name__ == '__main__':
    main()
