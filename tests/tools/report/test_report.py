"""`shear report` on a real short pruning run (exported) and a real short mixture run."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from PIL import Image

from composer_plugins.cli import main as cli_main
from composer_plugins.config.load import load_run_config
from composer_plugins.errors import ShearError
from composer_plugins.loggers.jsonl_metrics import read_metrics
from composer_plugins.models.mask_heatmap import layer_keep
from composer_plugins.tools.report.markdown import write_report
from composer_plugins.tools.report.metrics import eval_loss_keys, load_run, read_ref_losses
from conftest import MIXTURE_YAML, PRUNE_TINY_YAML


@pytest.fixture(scope='module')
def prune_run(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 batches of pruning (masks at 10 and 20, checkpoint at 20), exported to RUN/exported."""
    from composer_plugins.train_entry import run

    run_dir = tmp_path_factory.mktemp('prune')
    run(load_run_config(str(PRUNE_TINY_YAML), [
        f'variables.data_dir={corpus_dir}', f'variables.run_dir={run_dir}', 'max_duration=20ba',
        'eval_interval=10ba', 'save_interval=20ba',
    ]))
    checkpoint = run_dir / 'checkpoints' / 'latest-rank0.pt'
    assert cli_main.main(['export', str(checkpoint), '--out', str(run_dir / 'exported')]) == 0
    return run_dir


@pytest.fixture(scope='module')
def mixture_run(mixture_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 batches of dynamic batch loading over alpha / beta / small, no checkpoints."""
    from composer_plugins.train_entry import run

    run_dir = tmp_path_factory.mktemp('mixture')
    run(load_run_config(str(MIXTURE_YAML), [
        f'variables.data_dir={mixture_dir}', f'variables.run_dir={run_dir}', 'max_duration=20ba',
        'save_folder=null',
    ]))
    return run_dir


def _assert_png(path: Path) -> None:
    assert path.is_file(), path
    assert path.stat().st_size > 5000, path
    with Image.open(path) as image:
        assert image.format == 'PNG'
        assert image.size[0] > 200 and image.size[1] > 100


def test_report_of_both_runs(prune_run: Path, mixture_run: Path, tmp_path: Path, caplog) -> None:
    ref = tmp_path / 'ref.yaml'
    ref.write_text('# from shear ref-loss\nref_losses: {alpha: 3.3, beta: 3.4, small: 3.5}\n')
    out = tmp_path / 'report'
    with caplog.at_level(logging.INFO):
        rc = cli_main.main(['report', str(prune_run), str(mixture_run), '--out', str(out),
                            '--ref-losses', str(ref)])
    assert rc == 0
    assert str((out / 'report.md').resolve()) in caplog.text  # where the report went is logged

    text = (out / 'report.md').read_text()
    for section in ('## Domain weights', '## Sparsity', '## Masks per layer', '## Losses', '## Summary'):
        assert section in text
    assert str(prune_run.resolve()) in text and str(mixture_run.resolve()) in text
    pngs = ['domain_weights.png', 'sparsity.png', f'masks_{prune_run.name}.png', 'losses.png']
    for name in pngs:
        _assert_png(out / name)
        assert f']({name})' in text  # relative link

    # surviving layers of the last snapshot (step 20)
    masks = torch.load(prune_run / 'masks' / 'step20.pt')
    kept = [i for i, v in enumerate(masks['layer'].tolist()) if v > 0]
    assert f'Surviving layers: {", ".join(map(str, kept))} ({len(kept)} of 4)' in text
    assert '(masks step 20)' in text

    # table: exported shape and parameter count, last eval losses as printed
    config = json.loads((prune_run / 'exported' / 'config.json').read_text())
    row = next(line for line in text.splitlines() if line.startswith(f'| {prune_run.name} |'))
    cells = [c.strip() for c in row.strip('|').split('|')]
    assert cells[1:6] == ['2', '2', '1', '48', '96'] == [
        str(config[k]) for k in ('num_hidden_layers', 'num_attention_heads', 'num_key_value_heads',
                                 'hidden_size', 'intermediate_size')]
    from safetensors.torch import load_file
    weights = load_file(prune_run / 'exported' / 'model.safetensors')
    assert cells[6] == f'{sum(w.numel() for w in weights.values()):,}'

    prune_last = [r['metrics/eval/LanguageCrossEntropy'] for r in read_metrics(prune_run / 'metrics.jsonl')
                  if 'metrics/eval/LanguageCrossEntropy' in r][-1]
    assert f'{prune_last:.4f}' in row
    mix_row = next(line for line in text.splitlines() if line.startswith(f'| {mixture_run.name} |'))
    records = read_metrics(mixture_run / 'metrics.jsonl')
    for domain in ('alpha', 'beta', 'small'):
        last = [r[f'eval/{domain}/loss'] for r in records if f'eval/{domain}/loss' in r][-1]
        assert f'{last:.4f}' in mix_row
    assert 'Reference losses' in text and '3.3000' in text


def test_single_run_without_domains_or_masks(mixture_run: Path, tmp_path: Path) -> None:
    report = write_report([mixture_run], tmp_path / 'r')
    text = report.read_text()
    assert 'No `l0/expected_sparsity/*` metrics' in text and 'No `masks/step<N>.pt`' in text
    assert not (tmp_path / 'r' / 'sparsity.png').exists()
    _assert_png(tmp_path / 'r' / 'domain_weights.png')


def test_missing_metrics_is_a_shear_error(tmp_path: Path, caplog) -> None:
    empty = tmp_path / 'not_a_run'
    empty.mkdir()
    with pytest.raises(ShearError, match=r'not_a_run.*metrics\.jsonl'):
        load_run(empty)
    assert cli_main.main(['report', str(empty), '--out', str(tmp_path / 'out')]) == 2
    assert 'metrics.jsonl' in caplog.text


def test_bad_ref_losses_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / 'bad.yaml'
    bad.write_text('losses: {a: 1}\n')
    with pytest.raises(ShearError, match='bad.yaml'):
        read_ref_losses(bad)


def test_eval_loss_keys_and_layer_keep() -> None:
    keys = {'eval/a/loss', 'metrics/eval/a/LanguageCrossEntropy', 'metrics/eval/b/LanguageCrossEntropy'}
    assert eval_loss_keys(keys) == {'a': 'eval/a/loss', 'b': 'metrics/eval/b/LanguageCrossEntropy'}
    assert eval_loss_keys({'metrics/eval/LanguageCrossEntropy'}) == {'eval': 'metrics/eval/LanguageCrossEntropy'}
    masks = {
        'layer': torch.tensor([1.0, 0.0]),
        'kv_group': torch.tensor([[0.5, 0.0], [1.0, 1.0]]),
        'head': torch.tensor([[[1.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]]]),
        'intermediate': torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]),
        'hidden': torch.tensor([1.0, 0.0, 1.0]),
    }
    keep = layer_keep(masks)
    assert keep.kept_layers == [0]
    assert keep.fractions == [[0.5, 0.5, 0.25], [0.25, 1.0, 1.0]]
    assert keep.hidden == (2, 3)


def test_the_model_of_a_continued_run_is_its_latest_hf_checkpoint(tmp_path: Path) -> None:
    """llm-foundry's ``hf_checkpointer`` writes ``hf/huggingface/ba<N>``: the report reads the latest one."""
    from composer_plugins.tools.report.metrics import find_model_config

    for batch in (5, 40, 10):
        folder = tmp_path / 'hf' / 'huggingface' / f'ba{batch}'
        folder.mkdir(parents=True)
        (folder / 'config.json').write_text('{}')
    assert find_model_config(tmp_path) == tmp_path / 'hf' / 'huggingface' / 'ba40' / 'config.json'
    (tmp_path / 'exported').mkdir()
    (tmp_path / 'exported' / 'config.json').write_text('{}')
    assert find_model_config(tmp_path) == tmp_path / 'exported' / 'config.json'  # a pruning run's export first
