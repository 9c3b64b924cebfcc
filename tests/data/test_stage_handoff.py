"""Continued pre-training starts from the domain weights the previous stage ended with."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from composer_plugins.config.load import load_run_config
from composer_plugins.data.mixture_schedule import apportion
from composer_plugins.errors import ConfigError
from conftest import MIXTURE_YAML, REPO_ROOT

CONTINUE_YAML = REPO_ROOT / 'yamls' / 'continue_tiny.yaml'


def test_continue_stage_reads_the_previous_runs_final_weights(mixture_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from composer_plugins.models.tiny import tiny_config
    from composer_plugins.train_entry import run
    from data_prep.byte_tokenizer import ByteLevelTokenizer

    first = tmp_path / 'first'
    run(load_run_config(str(MIXTURE_YAML), [
        f'variables.data_dir={mixture_dir}', f'variables.run_dir={first}', 'save_folder=null', 'max_duration=20ba',
        'callbacks.dynamic_loading.ref_losses={alpha: 9.0, beta: 9.0, small: 0.5}', 'python_log_level=warning',
    ]))
    saved = json.loads((first / 'domain_weights.json').read_text())
    assert saved['batch'] == 20 and saved['domains']['small'] > 0.2

    model_dir = tmp_path / 'model'
    AutoModelForCausalLM.from_config(tiny_config('tiny-llama')).save_pretrained(model_dir)
    ByteLevelTokenizer().save_pretrained(model_dir)
    second = tmp_path / 'second'
    cfg = load_run_config(str(CONTINUE_YAML), [
        f'variables.data_dir={mixture_dir}', f'variables.run_dir={second}', f'variables.model_dir={model_dir}',
        f'variables.prev_run_dir={first}', 'save_folder=null', 'max_duration=10ba', 'python_log_level=warning',
    ])
    weights = [saved['domains'][d] for d in ('alpha', 'beta', 'small')]
    assert cfg.train_loader.dataset.weights == pytest.approx(weights)
    run(cfg)
    keys = [json.loads(line) for line in (second / 'samples' / 'rank0.jsonl').read_text().splitlines()]
    counts = Counter(domain for record in keys for domain in record['domain'])
    assert [counts[d] for d in range(3)] == apportion(np.array(weights), 80).tolist()


def test_missing_or_mismatched_weights_file_is_named(mixture_dir, tmp_path):
    with pytest.raises(ConfigError, match='weights_from: .* does not exist'):
        load_run_config(str(CONTINUE_YAML), [f'variables.data_dir={mixture_dir}', f'variables.prev_run_dir={tmp_path}',
                                             'variables.model_dir=tiny-llama'])
    (tmp_path / 'domain_weights.json').write_text('{"batch": 1, "domains": {"alpha": 0.5, "gamma": 0.5}}')
    with pytest.raises(ConfigError, match=r"has domains \['alpha', 'gamma'\]"):
        load_run_config(str(CONTINUE_YAML), [f'variables.data_dir={mixture_dir}', f'variables.prev_run_dir={tmp_path}',
                                             'variables.model_dir=tiny-llama'])
