"""``shear train`` from any folder (bundled YAMLs by name, the Composer launcher through ``-m``), and the
config-time errors a user's first hour runs into: one line, exit code 2, in seconds, no hub lookup."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import free_port, subprocess_env

SHEAR = [sys.executable, '-m', 'composer_plugins.cli.main']
SHORT = ['max_duration=2ba', 'eval_interval=2ba', 'save_interval=2ba']


def test_shear_train_runs_a_bundled_yaml_by_name_from_any_folder(corpus_dir, tmp_path):
    proc = subprocess.run([*SHEAR, 'train', 'tiny.yaml', f'variables.data_dir={corpus_dir}',
                           'variables.run_dir=run', *SHORT], cwd=tmp_path, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / 'run' / 'checkpoints' / 'ep0-ba2-rank0.pt').is_file()
    assert '[batch=2/2]:' in proc.stderr and not re.search(r'\d+%\|', proc.stderr)  # piped: metrics blocks, no bar


@pytest.mark.slow  # 2 processes; the default run launches 2 with train.py and with torchrun
def test_composer_launcher_runs_the_entry_module_with_a_bundled_name(corpus_dir, tmp_path):
    launcher = [sys.executable, '-m', 'composer.cli.launcher', '-n', '2', '--master_port', str(free_port()),
                '-m', 'composer_plugins.train_entry']
    proc = subprocess.run([*launcher, 'tiny.yaml', f'variables.data_dir={corpus_dir}', 'variables.run_dir=run',
                           *SHORT], cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / 'run' / 'checkpoints' / 'ep0-ba2-rank0.pt').is_file()


@pytest.fixture(scope='module')
def user_folder(tmp_path_factory, corpus_dir, mixture_dir) -> Path:
    """A user's own folder: ``models/`` with one model, the data, nothing of the checkout."""
    root = tmp_path_factory.mktemp('user')
    (root / 'models' / 'my_llama').mkdir(parents=True)
    (root / 'models' / 'my_llama' / 'config.json').write_text('{}')
    shutil.copytree(mixture_dir, root / 'mix')
    return root


@pytest.mark.parametrize(('yaml', 'override', 'expected'), [
    ('tiny.yaml', 'model.source=models/my_lama',
     "model.source: model directory 'models/my_lama' does not exist (expected a local HF directory, a hub id, or "
     "tiny-llama / tiny-llama-gqa / tiny-mistral / tiny-qwen2) ('models' holds: my_llama)"),
    ('tiny.yaml', 'tokenizer.name=models/my_tok', "tokenizer.name: tokenizer directory 'models/my_tok' does not exist"),
    ('tiny.yaml', 'tokenizer.name=models/my_llama', "tokenizer.name: 'models/my_llama' is a directory without a "
                                                   'tokenizer'),
    ('tiny.yaml', 'train_loader.dataset.max_seq_len=4096',
     'train_loader.dataset.max_seq_len: 4096 is longer than the rows of train_loader.dataset.local'),
    ('mixture_tiny.yaml', 'train_loader.dataset.domains=[alpha,beta,gamma]',
     "train_loader.dataset.domains: domain 'gamma' has no MDS index at 'mix/gamma/train/index.json'; the domains "
     "with a 'train' split in 'mix' are ['alpha', 'beta', 'small']"),
])
def test_first_hour_errors_are_one_line_in_seconds(user_folder, corpus_dir, yaml, override, expected):
    data = 'variables.data_dir=mix' if yaml == 'mixture_tiny.yaml' else f'variables.data_dir={corpus_dir}'
    started = time.monotonic()
    proc = subprocess.run([*SHEAR, 'train', yaml, data, override], cwd=user_folder, env=subprocess_env(),
                          capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    errors = [line for line in proc.stderr.splitlines() if ' ERROR ' in line]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-3000:]
    assert expected in errors[0] and 'Traceback' not in proc.stderr
    assert elapsed < 4, f'{elapsed:.1f} s'  # about 0.2 s in a quiet process; a loaded CI machine is slower
