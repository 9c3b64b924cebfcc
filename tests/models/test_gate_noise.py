"""Gate noise: one independent sample per (seed, batch, rank, microbatch), replayed exactly."""
from __future__ import annotations

import torch

from composer_plugins.models.pruner import Pruner, gate_noise_seed
from composer_plugins.pruning.shapes import ModelShape

SOURCE = ModelShape(num_layers=4, hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                    intermediate_size=64, vocab_size=64)
TARGET = ModelShape(num_layers=2, hidden_size=16, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                    intermediate_size=32, vocab_size=64)


def _pruner() -> Pruner:
    pruner = Pruner(SOURCE, TARGET, ['layer', 'kv_group', 'head', 'intermediate', 'hidden'], sample_seed=7)
    with torch.no_grad():  # gates in the middle of their range, where the noise decides the sample
        for gate in pruner.l0_masks.gates.values():
            gate.log_alpha.zero_()
    return pruner.train()


def _masks(pruner: Pruner, step: int, rank: int, microbatch: int) -> torch.Tensor:
    out = pruner(step, None, rank, microbatch)
    return torch.cat([m.detach().reshape(-1) for m in out.masks.values()])


def test_ranks_and_microbatches_draw_different_gates_and_replay_exactly():
    pruner = _pruner()
    draws = {(rank, mb): _masks(pruner, step=5, rank=rank, microbatch=mb) for rank in (0, 1) for mb in (0, 1)}
    keys = list(draws)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            assert not torch.equal(draws[a], draws[b]), (a, b)
    # the same (seed, step, rank, microbatch) replays the same gates, as a resumed run does
    assert torch.equal(draws[(1, 1)], _masks(_pruner(), step=5, rank=1, microbatch=1))
    assert not torch.equal(draws[(0, 0)], _masks(pruner, step=6, rank=0, microbatch=0))


def test_seed_depends_on_every_number():
    seeds = {gate_noise_seed(s, step, r, m) for s in (0, 1) for step in (0, 1) for r in (0, 1) for m in (0, 1)}
    assert len(seeds) == 16
    assert all(0 <= seed < 2 ** 63 for seed in seeds)
