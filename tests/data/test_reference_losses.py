"""`shear ref-loss`: scaling-law fits of reference losses and measured eval losses per domain."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from composer_plugins.cli.main import main
from composer_plugins.data.reference_losses import (
    fit_reference_losses,
    fit_scaling_law,
    measure_reference_losses,
    parse_param_count,
    read_token_rows,
)
from composer_plugins.errors import ShearError

# Known laws L(N) = E + A / (N / 1e9)^alpha per domain.
TRUE_LAWS = {'web': (1.8, 0.45, 0.32), 'code': (0.7, 1.1, 0.18), 'books': (2.1, 0.25, 0.55)}
SIZES = ('125M', '350M', '1.3B', '2.7B', '7B')


def _law(params: float, E: float, A: float, alpha: float) -> float:
    return E + A / (params / 1e9) ** alpha


def _write_sizes_csv(path: Path, sizes=SIZES) -> Path:
    lines = ['params,' + ','.join(TRUE_LAWS)]
    for size in sizes:
        n = parse_param_count(size)
        lines.append(','.join([size] + [f'{_law(n, *law):.10f}' for law in TRUE_LAWS.values()]))
    path.write_text('\n'.join(lines) + '\n')
    return path


def test_parse_param_count():
    assert parse_param_count('1.3B') == pytest.approx(1.3e9)
    assert parse_param_count('125m') == pytest.approx(1.25e8)
    assert parse_param_count('6_700_000_000') == 6.7e9
    assert parse_param_count('7e9') == 7e9
    for bad in ('', 'abc', '-5', '0', '1.3X'):
        with pytest.raises(ShearError):
            parse_param_count(bad)


def test_fit_recovers_the_law_and_predicts(tmp_path):
    fits = fit_reference_losses(_write_sizes_csv(tmp_path / 'sizes.csv'))
    assert list(fits) == list(TRUE_LAWS)
    for domain, (E, A, alpha) in TRUE_LAWS.items():
        fit = fits[domain]
        for new_size in (2.0e9, 500e6, 13e9):
            assert abs(fit.predict(new_size) - _law(new_size, E, A, alpha)) < 1e-3
        assert fit.E == pytest.approx(E, rel=2e-2)
        assert fit.A == pytest.approx(A, rel=2e-2)
        assert fit.alpha == pytest.approx(alpha, rel=2e-2)


def test_fit_needs_three_sizes():
    with pytest.raises(ShearError, match='at least 3'):
        fit_scaling_law(np.array([1e9, 2e9]), np.array([2.0, 1.9]), 'web')


def test_fit_cli_writes_ref_losses_yaml(tmp_path, capsys):
    csv_path = _write_sizes_csv(tmp_path / 'sizes.csv')
    out = tmp_path / 'losses.yaml'
    assert main(['ref-loss', 'fit', str(csv_path), '--target-params', '2B', '--out', str(out)]) == 0
    loaded = yaml.safe_load(out.read_text())
    assert list(loaded) == ['ref_losses'] and list(loaded['ref_losses']) == list(TRUE_LAWS)
    for domain, law in TRUE_LAWS.items():
        assert loaded['ref_losses'][domain] == pytest.approx(_law(2e9, *law), abs=2e-4)
    printed = capsys.readouterr().out
    assert 'alpha' in printed and 'web' in printed


@pytest.mark.parametrize('content, message', [
    ('params,web\n125M,3.0\n1.3B,2.5\n', 'at least 3'),
    ('size,web\n125M,3.0\n350M,2.8\n1.3B,2.5\n', "'params'"),
    ('params,web\n125M,3.0\n350M,oops\n1.3B,2.5\n', "line 3, column 'web'"),
    ('params,web\n125M,3.0\nlots,2.8\n1.3B,2.5\n', "line 3, column 'params'"),
    ('params\n125M\n350M\n1.3B\n', 'no domain column'),
])
def test_fit_rejects_bad_csv(tmp_path, content, message):
    path = tmp_path / 'bad.csv'
    path.write_text(content)
    with pytest.raises(ShearError, match=message):
        fit_reference_losses(path)
    assert main(['ref-loss', 'fit', str(path), '--target-params', '1B']) == 2


def test_fit_rejects_missing_csv_and_bad_target(tmp_path):
    with pytest.raises(ShearError, match='no such CSV'):
        fit_reference_losses(tmp_path / 'missing.csv')
    csv_path = _write_sizes_csv(tmp_path / 'sizes.csv')
    assert main(['ref-loss', 'fit', str(csv_path), '--target-params', 'big']) == 2


# --------------------------------------------------------------------------- measure

ROWS, SEQ_LEN, VOCAB = 8, 32, 320


@pytest.fixture(scope='module')
def measure_setup(tmp_path_factory) -> tuple[Path, Path]:
    """DATA with domains ``noise`` (random ids < 256) and ``pattern`` (a repeated pattern); a tiny model."""
    from composer_plugins.models.loading import load_causal_lm
    from data_prep.mds import write_token_rows

    root = tmp_path_factory.mktemp('ref_loss')
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, SEQ_LEN) for _ in range(ROWS)]
    pattern = [np.resize(np.array([5, 17, 99, 3]), SEQ_LEN) for _ in range(ROWS)]
    write_token_rows(root / 'data' / 'noise' / 'eval', noise, VOCAB)
    write_token_rows(root / 'data' / 'pattern' / 'eval', pattern, VOCAB)
    write_token_rows(root / 'data' / 'train_only' / 'train', noise[:2], VOCAB)  # no eval split
    torch.manual_seed(0)
    load_causal_lm('tiny-llama').save_pretrained(root / 'model')
    return root / 'data', root / 'model'


def _hf_loss(model_dir: Path, split_dir: Path, rows: int) -> float:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    ids = torch.from_numpy(np.stack(read_token_rows(split_dir, rows)))
    with torch.no_grad():
        return float(model(input_ids=ids, labels=ids).loss)


def test_measure_matches_hf_loss(measure_setup):
    data, model_dir = measure_setup
    results = measure_reference_losses(str(model_dir), data, max_rows=64, batch_size=3)
    assert list(results) == ['noise', 'pattern']  # train_only has no eval split: skipped
    for domain, res in results.items():
        assert res.rows == ROWS and res.tokens == ROWS * (SEQ_LEN - 1)
        assert res.loss == pytest.approx(_hf_loss(model_dir, data / domain / 'eval', ROWS), abs=1e-5)
    limited = measure_reference_losses(str(model_dir), data, domains=['pattern'], max_rows=5, batch_size=2)
    assert limited['pattern'].rows == 5
    assert limited['pattern'].loss == pytest.approx(_hf_loss(model_dir, data / 'pattern' / 'eval', 5), abs=1e-5)


def test_measure_cli_writes_yaml(measure_setup, tmp_path, capsys):
    data, model_dir = measure_setup
    out = tmp_path / 'losses.yaml'
    argv = ['ref-loss', 'measure', '--model', str(model_dir), '--data', str(data), '--out', str(out)]
    assert main(argv) == 0
    loaded = yaml.safe_load(out.read_text())
    assert set(loaded) == {'ref_losses'} and set(loaded['ref_losses']) == {'noise', 'pattern'}
    assert loaded['ref_losses']['noise'] == pytest.approx(
        _hf_loss(model_dir, data / 'noise' / 'eval', ROWS), abs=1e-4)
    assert 'measured_with' in out.read_text() and str(model_dir) in out.read_text()
    assert 'pattern' in capsys.readouterr().out


def test_measure_errors(measure_setup, tmp_path):
    data, model_dir = measure_setup
    with pytest.raises(ShearError, match='train_only'):
        measure_reference_losses(str(model_dir), data, domains=['noise', 'train_only'])
    argv = ['ref-loss', 'measure', '--model', str(model_dir), '--data', str(data), '--domains', 'noise,train_only']
    assert main(argv) == 2
    with pytest.raises(ShearError, match='no such data directory'):
        measure_reference_losses(str(model_dir), tmp_path / 'missing')
    with pytest.raises(ShearError, match='no such model directory'):
        measure_reference_losses(str(tmp_path / 'no_model'), data)
    with pytest.raises(ShearError, match='no domain folder'):
        measure_reference_losses(str(model_dir), tmp_path)


def test_measure_uses_manifest_domains(measure_setup, tmp_path):
    data, model_dir = measure_setup
    copy = tmp_path / 'data'
    copy.mkdir()
    for domain in ('noise', 'pattern', 'train_only'):
        (copy / domain).symlink_to(data / domain)
    (copy / 'manifest.json').write_text(json.dumps({'domains': {'pattern': {}}}))
    assert list(measure_reference_losses(str(model_dir), copy, max_rows=2)) == ['pattern']
    (copy / 'manifest.json').write_text(json.dumps({'domains': {'pattern': {}, 'train_only': {}}}))
    with pytest.raises(ShearError, match='train_only'):
        measure_reference_losses(str(model_dir), copy, max_rows=2)
