"""Masks that learn: L0 finds FFN channels whose removal lowers the loss, which a frozen mask cannot.

A briefly trained tiny Llama (the ``tiny_teacher_dir`` fixture) gets *planted* channels: in
every layer a random half of the FFN channels is rewritten so that each one, on its own and
on every token, pushes the logit of one byte the corpus never uses up: ``up_proj`` row =
``gate_proj`` row (so the channel's activation ``silu(a) a`` is never negative) and the
``down_proj`` column along that byte's ``lm_head`` row. Removing them lowers the loss (by
3.6 nats), and each one's gradient has the same sign, so a gate can learn it. Their
``gate_proj`` rows are scaled by 8, so the one-shot activation importance (``init:
importance``) ranks them among the *most* important: a deliberately wrong start. The target
keeps half of each layer's channels, as many as are unplanted.

Each run is a real Composer training with the shipped ``mask_learning`` / ``lagrangian``
defaults (only the start and the warm-up differ between dense and importance runs). The
weights are frozen (``optimizer.lr: 0``): the planted harm lies along one direction that
trained weights undo within a few steps (then no gate has a reason to move), and the test is
about the masks. The
frozen controls (``mask_learning.lr: 0``) run the same check and must fail it: that is what
shows the check can fail.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from composer_plugins.config.load import load_run_config
from conftest import PRUNE_TINY_YAML

STEPS = 60
PLANTED_RMS = 8.0  # RMS of a planted channel's gate pre-activation (unplanted: about 1)
PLANTED_WRITE = 0.002  # norm of a planted channel's down_proj column (along the unused byte's lm_head row)
FFN, KEEP = 128, 64  # tiny-llama's FFN width; the target keeps half of every layer's channels


@pytest.fixture(scope='module')
def planted_source(tiny_teacher_dir: Path, corpus_dir: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.Tensor]:
    """The trained tiny model with planted channels, and the planted set (a bool ``(layers, FFN)`` mask)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_teacher_dir, torch_dtype=torch.float32)
    generator = torch.Generator().manual_seed(11)
    layers = model.model.layers
    planted = torch.zeros(len(layers), FFN, dtype=torch.bool)
    inputs = _mlp_inputs(model, corpus_dir)
    with torch.no_grad():
        unused_byte = model.lm_head.weight[300]
        direction = unused_byte / unused_byte.norm()
        for index, layer in enumerate(layers):
            chosen = torch.randperm(FFN, generator=generator)[:FFN - KEEP]
            planted[index, chosen] = True
            gate = layer.mlp.gate_proj.weight
            pre = inputs[index] @ gate[chosen].T  # each planted channel's gate pre-activation, per token
            sign = torch.where(pre.mean(0) < 0, -1.0, 1.0)  # mostly positive, where silu(a) a is large
            gate[chosen] *= (sign * PLANTED_RMS / pre.pow(2).mean(0).sqrt())[:, None]  # the same RMS: none inert
            layer.mlp.up_proj.weight[chosen] = gate[chosen]
            layer.mlp.down_proj.weight[:, chosen] = direction[:, None] * PLANTED_WRITE
    out = tmp_path_factory.mktemp('planted')
    model.save_pretrained(out)
    return out, planted


def _mlp_inputs(model, corpus_dir: Path) -> list[torch.Tensor]:
    """Every layer's MLP input on 16 training rows, ``(tokens, hidden)`` each."""
    from composer_plugins.data.calibration import calibration_rows

    rows = torch.as_tensor(np.stack(calibration_rows(str(corpus_dir), 'train', None, 16))).long()
    captured: list[torch.Tensor] = []
    def capture(_, args):
        captured.append(args[0].reshape(-1, args[0].shape[-1]))

    handles = [layer.mlp.register_forward_pre_hook(capture) for layer in model.model.layers]
    with torch.no_grad():
        model(input_ids=rows)
    for handle in handles:
        handle.remove()
    return captured


def _prune(corpus_dir: Path, source: Path, run_dir: Path, *overrides: str):
    from composer_plugins.train_entry import run

    cfg = load_run_config(str(PRUNE_TINY_YAML), [
        f'variables.data_dir={corpus_dir}', f'variables.run_dir={run_dir}', f'model.source={source}',
        'model.config_overrides.num_hidden_layers=2', 'model.config_overrides.num_attention_heads=4',
        'model.pruning.mask_types=[intermediate]',
        'model.pruning.target={num_layers: 2, num_attention_heads: 4, num_key_value_heads: 4, hidden_size: 64, '
        f'intermediate_size: {KEEP}}}',
        f'max_duration={STEPS}ba', f'eval_interval={STEPS}ba', 'save_folder=null', 'loggers={}',
        'optimizer.lr=0', 'callbacks.mask_learning.settle=5ba', *overrides,
    ])
    trainer = run(cfg)
    masks = trainer.state.model.pruner.l0_masks
    pruned = ~(masks.deterministic()['intermediate'] > 0)
    trainer.close()
    return pruned


def _planted_share(pruned: torch.Tensor, planted: torch.Tensor) -> float:
    """The share of the pruned channels that are planted ones."""
    assert int(pruned.sum(-1).min()) == int(pruned.sum(-1).max()) == FFN - KEEP  # exact target per layer
    return float((pruned & planted).sum()) / float(pruned.sum())


DENSE = ('callbacks.mask_learning.init=dense', f'callbacks.lagrangian.target_warmup={STEPS // 3}ba')


def test_planted_channels_remove_loss(planted_source, corpus_dir):
    """The premise: removing the planted channels lowers the loss of the planted model."""
    from transformers import AutoModelForCausalLM

    from composer_plugins.data.calibration import calibration_rows

    source, planted = planted_source
    model = AutoModelForCausalLM.from_pretrained(source).eval()
    rows = torch.as_tensor(np.stack(calibration_rows(str(corpus_dir), "eval", None, 16)[:16])).long()

    def loss() -> float:
        with torch.no_grad():
            return float(model(input_ids=rows, labels=rows).loss)

    before = loss()
    with torch.no_grad():
        for index, layer in enumerate(model.model.layers):
            layer.mlp.down_proj.weight[:, planted[index]] = 0.0
    assert loss() < before - 1.0


def test_dense_start_prunes_the_planted_channels(planted_source, corpus_dir, tmp_path):
    source, planted = planted_source
    learned = _planted_share(_prune(corpus_dir, source, tmp_path / 'learned', *DENSE), planted)
    frozen = _planted_share(_prune(corpus_dir, source, tmp_path / 'frozen', *DENSE,
                                   'callbacks.mask_learning.lr=0'), planted)
    assert learned >= 0.9, learned
    assert frozen < 0.9, frozen  # the control: a mask that does not learn fails the same check


def test_wrong_importance_start_moves_onto_the_planted_channels(planted_source, corpus_dir, tmp_path):
    source, planted = planted_source
    learned = _planted_share(_prune(corpus_dir, source, tmp_path / 'learned'), planted)
    frozen = _planted_share(_prune(corpus_dir, source, tmp_path / 'frozen', 'callbacks.mask_learning.lr=0'),
                            planted)
    assert frozen < 0.3, frozen  # the one-shot scores keep most planted channels (78%): a wrong start
    assert learned >= 0.7, learned
