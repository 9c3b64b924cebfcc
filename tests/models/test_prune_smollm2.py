"""The embedded default run on the real SmolLM2-135M, shortened: prune, export, continue, report (slow)."""
from __future__ import annotations

import json

import pytest
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import REPO_ROOT

PRUNE_YAML = REPO_ROOT / 'yamls' / 'prune.yaml'


@pytest.mark.slow
def test_embedded_pipeline_exports_the_preset_shape_and_reports(tmp_path):
    from composer_plugins.tools.demo.pipeline import DemoConfig, run_demo

    report = run_demo(DemoConfig(out=tmp_path, prune_batches=3, continue_batches=3))

    target = yaml.safe_load(PRUNE_YAML.read_text())['model']['pruning']['target']
    exported = tmp_path / 'prune' / 'exported'
    model = AutoModelForCausalLM.from_pretrained(exported)
    config = model.config
    assert (config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads, config.hidden_size,
            config.intermediate_size) == (target['num_layers'], target['num_attention_heads'],
                                          target['num_key_value_heads'], target['hidden_size'],
                                          target['intermediate_size'])
    assert config.head_dim == 64 and config.rope_theta == 100000
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert len(json.loads((exported / 'pruning.json').read_text())['kept_layers']) == target['num_layers']

    tokenizer = AutoTokenizer.from_pretrained(exported)
    ids = tokenizer('def fibonacci(n):', return_tensors='pt')['input_ids']
    generated = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    assert generated.shape[1] == ids.shape[1] + 8

    from composer_plugins.loggers.jsonl_metrics import read_metrics
    from composer_plugins.models.dead_units import check_no_dead_units

    check_no_dead_units(model)  # raises on a kept unit whose weights are all zero
    last = {}
    for record in read_metrics(tmp_path / 'prune' / 'metrics.jsonl'):
        last.update(record)
    for mask in ('layer', 'kv_group', 'intermediate', 'hidden'):
        gap = abs(last[f'l0/expected_sparsity/{mask}'] - last[f'l0/target_sparsity/{mask}'])
        assert gap <= 0.02, (mask, gap)

    results = json.loads((tmp_path / 'results.json').read_text())['eval_loss']
    assert set(results) == {'source', 'pruned', 'continued'}
    assert all(set(losses) == {'code', 'docs', 'licenses'} for losses in results.values())
    assert (report / 'report.md').exists()
    assert json.loads((tmp_path / 'prune' / 'domain_weights.json').read_text())['batch'] == 3
