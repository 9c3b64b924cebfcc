"""`yamls/prune.yaml` on the real SmolLM2-135M: a short CPU run, export, load, generate (slow)."""
from __future__ import annotations

import json

import pytest
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from composer_plugins.cli.main import main as shear_main
from conftest import REPO_ROOT, run_train

PRUNE_YAML = REPO_ROOT / 'yamls' / 'prune.yaml'


@pytest.mark.slow
def test_prune_yaml_on_smollm2_exports_the_preset_shape(tmp_path):
    from composer_plugins.data.python_corpus import build_python_corpus_shards
    from composer_plugins.models.smollm2 import convert_smollm2

    model_dir = convert_smollm2(tmp_path / 'smollm2')
    data_dir = build_python_corpus_shards(tmp_path / 'data', seq_len=256, train_rows=32, eval_rows=8,
                                          tokenizer_name=str(model_dir))
    run_dir = tmp_path / 'run'
    run_train(
        f'variables.model_dir={model_dir}', f'variables.data_dir={data_dir}', f'variables.run_dir={run_dir}',
        'max_duration=3ba', 'eval_interval=3ba', 'save_interval=3ba', 'eval_subset_num_batches=1',
        'model.pruning.lagrangian_warmup=1ba', yaml=PRUNE_YAML, timeout=1200,
    )
    out = tmp_path / 'exported'
    assert shear_main(['export', str(run_dir / 'checkpoints' / 'ep0-ba3-rank0.pt'), '--out', str(out)]) == 0

    target = yaml.safe_load(PRUNE_YAML.read_text())['model']['pruning']['target']
    model = AutoModelForCausalLM.from_pretrained(out)
    config = model.config
    assert (config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads, config.hidden_size,
            config.intermediate_size) == (target['num_layers'], target['num_attention_heads'],
                                          target['num_key_value_heads'], target['hidden_size'],
                                          target['intermediate_size'])
    assert config.head_dim == 64 and config.rope_theta == 100000
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    record = json.loads((out / 'pruning.json').read_text())
    assert len(record['kept_layers']) == target['num_layers']

    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer('def fibonacci(n):', return_tensors='pt')['input_ids']
    generated = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    assert generated.shape[1] == ids.shape[1] + 8
    assert isinstance(tokenizer.decode(generated[0]), str)
