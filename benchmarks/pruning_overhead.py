"""Cost of pruning: a training step with all mask types vs a plain step, side by side.

Same source model (a LLaMA-shaped config of about 35M parameters, or any --source), same
batch, same process; the kinds of step alternate so that machine noise hits them all. A third
kind is the plain step plus the ``finite_guard`` callback's per-batch check of the loss.
Also compares the eval forward of the masked model (deterministic masks) with the
forward of the exported, smaller model. Prints one JSON line of ratios and medians.

    python benchmarks/pruning_overhead.py [--steps 10] [--batch 4] [--seq 256]
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import time

import torch

from composer_plugins.callbacks.finite_guard import is_nonfinite
from composer_plugins.models.causal_lm import ShearCausalLM
from composer_plugins.models.export import export_pruned_model
from composer_plugins.pruning.config import MASK_CALLBACKS

SOURCE_OVERRIDES = dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=14,
                        num_attention_heads=8, num_key_value_heads=4)
TARGET = dict(num_layers=8, num_attention_heads=4, num_key_value_heads=2, hidden_size=384, intermediate_size=1024)


def _train_step(model: ShearCausalLM, optimizers: list[torch.optim.Optimizer], batch: dict,
                guard: bool = False) -> None:
    """One step as the Trainer runs it: the weights' optimizer, and with pruning the two callbacks' optimizers.

    ``mask_learning`` steps Adam on the log-alphas and clamps them; ``lagrangian`` steps Adam
    (``maximize``) on the multipliers; the targets are fixed (no ramp), as after the warm-up.
    With ``guard``, the ``finite_guard`` callback's per-batch check of the loss runs before backward.
    """
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    loss = model.loss(model(batch), batch)
    if guard and is_nonfinite(loss):
        raise RuntimeError('non-finite loss')
    (loss['total'] if isinstance(loss, dict) else loss).backward()
    for optimizer in optimizers:
        optimizer.step()
    if model.pruner is not None:
        model.pruner.l0_masks.clamp_()


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--source', default='tiny-llama-gqa')
    parser.add_argument('--steps', type=int, default=10)
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--seq', type=int, default=256)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)

    plain = ShearCausalLM(args.source, config_overrides=SOURCE_OVERRIDES)
    pruning = ShearCausalLM(args.source, config_overrides=SOURCE_OVERRIDES, pruning={
        'target': TARGET, 'mask_types': ['layer', 'kv_group', 'head', 'intermediate', 'hidden'],
    })
    pruning.model.load_state_dict(plain.model.state_dict())
    pruning.armed_by.update(MASK_CALLBACKS)  # the masks' optimizers below stand in for the two callbacks
    params = sum(p.numel() for p in plain.model.parameters())
    ids = torch.randint(0, 256, (args.batch, args.seq))
    batch = {'input_ids': ids, 'attention_mask': torch.ones_like(ids), 'labels': ids}
    opt_plain = [torch.optim.AdamW(plain.parameters(), lr=1e-4)]
    opt_pruning = [  # the weights', mask_learning's and lagrangian's (yamls/prune.yaml's rates)
        torch.optim.AdamW(pruning.model.parameters(), lr=1e-4),
        torch.optim.Adam(pruning.pruner.l0_masks.parameters(), lr=0.05, betas=(0.9, 0.95)),
        torch.optim.Adam(pruning.pruner.lagrangian.parameters(), lr=0.1, betas=(0.9, 0.95), maximize=True),
    ]
    plain.train()
    pruning.train()
    for _ in range(2):  # warm-up
        _train_step(plain, opt_plain, batch)
        _train_step(pruning, opt_pruning, batch)
    plain_times, guarded_times, pruning_times = [], [], []
    for _ in range(args.steps):
        plain_times.append(_timed(lambda: _train_step(plain, opt_plain, batch)))
        guarded_times.append(_timed(lambda: _train_step(plain, opt_plain, batch, guard=True)))
        pruning_times.append(_timed(lambda: _train_step(pruning, opt_pruning, batch)))

    pruning.eval()
    with torch.no_grad():
        masks = pruning.pruner(0).masks
        exported = export_pruned_model(pruning.model, masks, pruning.pruner.source, pruning.pruner.target).eval()
        masked_times, exported_times = [], []
        for _ in range(args.steps):
            masked_times.append(_timed(lambda: pruning(batch)))
            exported_times.append(_timed(lambda: exported(input_ids=ids)))
    result = {
        'source_params_m': round(params / 1e6, 1),
        'exported_params_m': round(sum(p.numel() for p in exported.parameters()) / 1e6, 1),
        'batch': args.batch, 'seq': args.seq, 'steps': args.steps, 'threads': torch.get_num_threads(),
        'plain_step_s': round(statistics.median(plain_times), 4),
        'pruning_step_s': round(statistics.median(pruning_times), 4),
        'pruning_over_plain': round(statistics.median(pruning_times) / statistics.median(plain_times), 3),
        'guarded_step_s': round(statistics.median(guarded_times), 4),
        'guarded_over_plain': round(statistics.median(guarded_times) / statistics.median(plain_times), 3),
        'masked_eval_forward_s': round(statistics.median(masked_times), 4),
        'exported_forward_s': round(statistics.median(exported_times), 4),
        'exported_over_masked': round(statistics.median(exported_times) / statistics.median(masked_times), 3),
    }
    print(json.dumps(result))  # the benchmark's output is this one JSON line


if __name__ == '__main__':
    main()
