"""Bad configs fail fast with one readable message naming the key."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from composer_plugins.config.load import load_run_config
from composer_plugins.errors import ConfigError
from conftest import REPO_ROOT, TINY_YAML, subprocess_env


def _load(corpus_dir: Path, *overrides: str):
    return load_run_config(str(TINY_YAML), [f'variables.data_dir={corpus_dir}', *overrides])


def test_valid_tiny_yaml_loads(corpus_dir):
    cfg = _load(corpus_dir)
    assert cfg.model.source == 'tiny-llama'
    assert cfg.train_loader.dataset.local == str(corpus_dir)
    assert cfg.optimizer.lr == pytest.approx(3e-3)


@pytest.mark.parametrize(('override', 'expected'), [
    ('max_duraton=10ba', "max_duraton: unknown key. Did you mean 'max_duration'?"),
    ('model.sourse=tiny-llama', "model.sourse: unknown key. Did you mean 'source'?"),
    ('train_loader.dataset.shufle=true', "train_loader.dataset.shufle: unknown key. Did you mean 'shuffle'?"),
])
def test_unknown_key_is_named_with_suggestion_and_expected_keys(corpus_dir, override, expected):
    with pytest.raises(ConfigError) as info:
        _load(corpus_dir, override)
    message = str(info.value)
    assert message.startswith(expected)
    assert 'Expected one of:' in message


@pytest.mark.parametrize(('override', 'expected'), [
    ('global_train_batch_size=eight', "global_train_batch_size: got 'eight' (str); expected int"),
    ('optimizer.lr=fast', "optimizer.lr: got 'fast' (str); expected float"),
    ('precision=fp8', "precision: got 'fp8'; expected one of 'fp32', 'amp_bf16', 'amp_fp16'"),
    ('train_loader.name=txt', "train_loader.name: got 'txt'; expected one of 'text'"),
    ('model.source=/no/such/model', "model.source: model directory '/no/such/model' does not exist"),
])
def test_wrong_values_are_named(corpus_dir, override, expected):
    with pytest.raises(ConfigError, match='^' + __import__('re').escape(expected)):
        _load(corpus_dir, override)


def test_missing_shards_are_named(tmp_path):
    with pytest.raises(ConfigError, match='train_loader.dataset.local: no MDS index at'):
        load_run_config(str(TINY_YAML), [f'variables.data_dir={tmp_path}'])


def test_missing_required_key(tmp_path, corpus_dir):
    data = yaml.safe_load(TINY_YAML.read_text())
    del data['max_seq_len']
    path = tmp_path / 'run.yaml'
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match='^max_seq_len: required key is missing'):
        load_run_config(str(path), [f'variables.data_dir={corpus_dir}'])


def test_bad_config_fails_fast_with_one_message(corpus_dir):
    """Through the real entry point: exit code 2, one error line, well under 10 s."""
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / 'train.py'), str(TINY_YAML), f'variables.data_dir={corpus_dir}',
         'optimizer.lrr=1.0'],
        cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=60,
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 2
    error_lines = [line for line in proc.stderr.splitlines() if 'ERROR' in line]
    assert len(error_lines) == 1, proc.stderr
    assert "optimizer.lrr: unknown key. Did you mean 'lr'?" in error_lines[0]
    assert 'Traceback' not in proc.stderr
    assert elapsed < 10, f'took {elapsed:.1f}s'
