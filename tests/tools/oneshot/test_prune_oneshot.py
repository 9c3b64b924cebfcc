"""`shear prune-oneshot`: exact shape, export == masked model, and better than random masks
on a tiny model trained here first."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from composer_plugins.cli import main as cli_main
from composer_plugins.data.reference_losses import mean_token_loss, read_token_rows
from composer_plugins.importance.scores import measure_importance
from composer_plugins.importance.select import random_scores, select_masks, top_k_mask
from composer_plugins.models.adapters import adapter_for
from composer_plugins.models.export import export_pruned_model
from composer_plugins.models.loading import load_causal_lm
from composer_plugins.models.mask_hooks import MaskApplier
from composer_plugins.pruning.shapes import ModelShape
from composer_plugins.tools.oneshot.prune import calibration_rows
from data_prep.byte_tokenizer import ByteLevelTokenizer

DOMAINS = ('alpha', 'beta', 'small')
# Source: tiny-llama-gqa with 4 layers (hidden 64, 4 query heads in 2 KV groups, FFN 128).
TARGETS = {
    'query-heads': dict(num_layers=3, num_attention_heads=2, num_key_value_heads=2, hidden_size=48,
                        intermediate_size=64),
    'kv-groups': dict(num_layers=2, num_attention_heads=2, num_key_value_heads=1, hidden_size=32,
                      intermediate_size=96),
}


def target_arg(target: dict[str, int]) -> str:
    return ','.join(f'{key}={value}' for key, value in target.items())


@pytest.fixture(scope='module')
def trained_source(mixture_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-llama-gqa (4 layers) trained 500 AdamW steps on the mixture's train rows, saved as an HF dir."""
    torch.manual_seed(0)
    model = load_causal_lm('tiny-llama-gqa', config_overrides={'num_hidden_layers': 4})
    rows = [row for d in DOMAINS for row in read_token_rows(mixture_dir / d / 'train', 600)]
    order = np.random.default_rng(0).permutation(len(rows))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(500):
        ids = torch.from_numpy(np.stack([rows[i] for i in order[step * 8 % len(rows):][:8]])).long()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    out = tmp_path_factory.mktemp('source') / 'tiny-trained'
    model.save_pretrained(out)
    ByteLevelTokenizer().save_pretrained(out)
    return out


def held_out_loss(model, mixture_dir: Path) -> float:
    rows = [row for d in DOMAINS for row in read_token_rows(mixture_dir / d / 'eval', 16)]
    return mean_token_loss(model, rows, batch_size=16).loss


def prune(source: Path, data: Path, target: dict[str, int], out: Path, *extra: str) -> int:
    return cli_main.main(['prune-oneshot', '--model', str(source), '--data', str(data), '--target',
                          target_arg(target), '--out', str(out), '--calib-rows', '48', *extra])


@pytest.mark.parametrize('name', sorted(TARGETS))
def test_exact_shape_and_export_equals_masked_model(name: str, trained_source: Path, mixture_dir: Path,
                                                     tmp_path: Path) -> None:
    target = TARGETS[name]
    out = tmp_path / 'pruned'
    assert prune(trained_source, mixture_dir, target, out) == 0
    exported = AutoModelForCausalLM.from_pretrained(out).eval()
    source = load_causal_lm(str(trained_source))
    source_shape = ModelShape.from_hf_config(source.config)
    want = ModelShape(**{**vars(source_shape), **target})
    assert ModelShape.from_hf_config(exported.config) == want

    # The same masks, applied by the pruning hooks to the source, give the same logits.
    rows = calibration_rows(mixture_dir, 'train', None, 48)
    masks = select_masks(measure_importance(source, rows), source_shape, want)
    record = json.loads((out / 'pruning.json').read_text())
    assert record['method'] == 'oneshot-activation' and record['calibration']['rows'] == 48
    if 'layer' in masks:
        assert record['kept_layers'] == masks['layer'].nonzero().flatten().tolist()
    assert record['kept_hidden'] == masks['hidden'].nonzero().flatten().tolist()
    MaskApplier(source, adapter_for(source.config), source_shape).set_masks(masks)
    # Compared in float64, so BLAS / thread-count order cannot matter: float64 round-off here is
    # ~1e-14 (measured 6.7e-15 with float64 norms). The 0/1 masks fold nothing, so the float32
    # export is exact in float64. What remains does not depend on the thread count: HF's RMSNorm
    # and MaskedRMSNorm (which mirrors it) compute in float32 even on float64 inputs, and the
    # masked norm sums over all source channels (pruned ones are zeros) while the exported one
    # sums over the kept ones, so the float32 sums round differently: measured 3.1e-6
    # (kv-groups) and 6.2e-6 (query-heads) on logits up to 7.3. A real mismatch is far larger:
    # one kept head's o_proj block off by a relative 1e-4 moves the logits by 3e-4 to 1e-3.
    source.double().eval()
    exported.double()
    ids = torch.from_numpy(np.stack(read_token_rows(mixture_dir / 'alpha' / 'eval', 3))).long()
    with torch.no_grad():
        diff = (exported(input_ids=ids).logits - source(input_ids=ids).logits).abs().max().item()
    logging.getLogger(__name__).info('%s: max |logit diff| %.3g (float64)', name, diff)
    assert diff <= 5e-5


def test_beats_random_masks(trained_source: Path, mixture_dir: Path, tmp_path: Path) -> None:
    target = TARGETS['query-heads']
    assert prune(trained_source, mixture_dir, target, tmp_path / 'oneshot') == 0
    oneshot = held_out_loss(AutoModelForCausalLM.from_pretrained(tmp_path / 'oneshot'), mixture_dir)
    source = load_causal_lm(str(trained_source))
    shape = ModelShape.from_hf_config(source.config)
    want = ModelShape(**{**vars(shape), **target})
    random_losses = []
    for seed in range(3):
        masks = select_masks(random_scores(shape, torch.Generator().manual_seed(seed)), shape, want)
        random_losses.append(held_out_loss(export_pruned_model(source, masks, shape, want), mixture_dir))
    logging.getLogger(__name__).info('one-shot %.3f, random %s, source %.3f', oneshot, random_losses,
                                     held_out_loss(source, mixture_dir))
    assert oneshot < min(random_losses)


def test_top_k_mask_keeps_exactly_k_per_row() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.9], [3.0, 1.0, 2.0, 0.0]])
    assert top_k_mask(scores, 2).tolist() == [[0, 1, 0, 1], [1, 0, 1, 0]]


@pytest.mark.parametrize('target_text, message', [
    ('num_layers=2,num_attention_heads=2,num_key_value_heads=1,hidden_size=128,intermediate_size=64', 'hidden_size'),
    ('num_layers=2,num_attention_heads=2', 'num_key_value_heads: required key is missing'),
    ('num_layers=two', "'num_layers=two'"),
])
def test_bad_target_is_named(target_text: str, message: str, trained_source: Path, mixture_dir: Path,
                             tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    args = ['prune-oneshot', '--model', str(trained_source), '--data', str(mixture_dir), '--target', target_text,
            '--out', str(tmp_path / 'out')]
    with caplog.at_level(logging.ERROR):
        assert cli_main.main(args) == 2
    assert message in caplog.text
    assert not (tmp_path / 'out').exists()


def test_too_few_calibration_rows_is_named(trained_source: Path, mixture_dir: Path, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        assert prune(trained_source, mixture_dir, TARGETS['kv-groups'], tmp_path / 'out', '--split', 'eval',
                     '--calib-rows', '500') == 2
    assert 'fewer than the 500 calibration rows asked for' in caplog.text
