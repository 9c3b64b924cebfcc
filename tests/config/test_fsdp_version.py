"""A run with ``fsdp_config`` is FSDP2 whatever the environment says, or fails at once naming ``FSDP_VERSION``."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from composer_plugins.config.fsdp_version import require_fsdp2
from composer_plugins.errors import ConfigError
from conftest import REPO_ROOT, TINY_YAML, subprocess_env


def test_unset_version_becomes_fsdp2_and_fsdp1_is_refused():
    env: dict[str, str] = {}
    require_fsdp2(env)
    assert env == {'FSDP_VERSION': '2'}
    require_fsdp2(env)  # already 2: left alone
    with pytest.raises(ConfigError, match=r"FSDP_VERSION='1'"):
        require_fsdp2({'FSDP_VERSION': '1'})


def test_config_transform_only_touches_this_packages_model_with_fsdp(monkeypatch, corpus_dir, tmp_path):
    from llmfoundry.registry import config_transforms
    from llmfoundry.utils.config_utils import apply_transforms_to_config

    from composer_plugins.config.foundry import shear_run_transform
    from composer_plugins.config.load import load_yaml_with_overrides

    # an entry point, so llm-foundry's train applies it with every registered transform
    assert config_transforms.get_all()['shear_run'] is shear_run_transform
    monkeypatch.setenv('FSDP_VERSION', '1')
    monkeypatch.setenv('WORLD_SIZE', '2')  # one process drops fsdp_config before the check
    other = {'model': {'name': 'mpt_causal_lm'}, 'fsdp_config': {}}
    assert apply_transforms_to_config(dict(other), ['shear_run']) == other  # someone else's run: untouched
    ours = load_yaml_with_overrides(str(TINY_YAML), [f'variables.data_dir={corpus_dir}', 'save_folder=null',
                                                      'fsdp_config={state_dict_type: sharded}'])
    with pytest.raises(ConfigError, match='FSDP_VERSION'):
        apply_transforms_to_config(dict(ours), ['shear_run'])
    monkeypatch.delenv('FSDP_VERSION')
    assert apply_transforms_to_config(dict(ours), ['shear_run'])['fsdp_config']['state_dict_type'] == 'sharded'
    assert os.environ['FSDP_VERSION'] == '2'


def test_fsdp1_environment_fails_before_training(corpus_dir, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / 'train.py'), str(TINY_YAML), f'variables.data_dir={corpus_dir}',
         f'variables.run_dir={tmp_path}', 'fsdp_config={state_dict_type: sharded}'],
        cwd=REPO_ROOT, env=subprocess_env(FSDP_VERSION='1', WORLD_SIZE='2'), capture_output=True, text=True,
        timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if ' ERROR ' in line]
    assert len(errors) == 1 and "FSDP_VERSION='1'" in errors[0], proc.stderr[-3000:]
    assert not (tmp_path / 'checkpoints').exists()
