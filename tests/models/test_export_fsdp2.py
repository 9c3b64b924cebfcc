"""FSDP2 with 2 CPU processes (``FSDP_VERSION`` unset) runs pruning steps; `shear export` reads the sharded
checkpoint."""
from __future__ import annotations

import json
import re

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from composer_plugins.cli.main import main as shear_main
from composer_plugins.loggers.jsonl_metrics import read_metrics
from conftest import PRUNE_TINY_YAML, run_train


def test_fsdp2_pruning_run_exports_from_sharded_checkpoint(corpus_dir, tmp_path):
    save_folder = tmp_path / 'ckpt'
    started = run_train(
        f'variables.data_dir={corpus_dir}', f'variables.run_dir={tmp_path}', 'max_duration=6ba',
        'eval_interval=6ba', 'save_interval=6ba', 'run_name=fsdp2-prune', f'save_folder={save_folder}',
        'fsdp_config={state_dict_type: sharded, mixed_precision: FULL}',
        'callbacks.mask_learning.settle=0ba',  # let the masks move freely (no projection onto the target)
        nproc=2, yaml=PRUNE_TINY_YAML, unset=('FSDP_VERSION',),  # FSDP2 from the YAML alone
    )
    # the module types of the model it trained, as each rank whose log the launcher shows reports them
    wrapped = re.findall(r'parallelism: (.+)', started.stdout + started.stderr)
    assert wrapped and {line.strip() for line in wrapped} == {'FSDP2 (fully_shard) over 2 ranks'}, wrapped
    sharded = save_folder / 'ep0-ba6'
    assert (sharded / '.metadata').exists()
    assert (tmp_path / 'masks' / 'step6.pt').exists()
    # The masks and multipliers learn under FSDP2 (their gradients reach the sharded parameters).
    records = read_metrics(tmp_path / 'metrics.jsonl')
    lambdas = [r['l0/lambda1/hidden'] for r in records if 'l0/lambda1/hidden' in r]
    sparsity = [r['l0/expected_sparsity/hidden'] for r in records if 'l0/expected_sparsity/hidden' in r]
    assert len(lambdas) >= 2 and len(set(lambdas)) > 1 and len(set(sparsity)) > 1
    # the importance init ran on both ranks from the same (broadcast) scores: the run wrote one set of masks,
    # and the exported kept units below are those masks

    out = tmp_path / 'exported'
    assert shear_main(['export', str(sharded), '--out', str(out)]) == 0
    model = AutoModelForCausalLM.from_pretrained(out)
    config = model.config
    assert (config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads,
            config.hidden_size, config.intermediate_size) == (2, 2, 1, 48, 96)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    record = json.loads((out / 'pruning.json').read_text())
    assert record['source_model'] == 'tiny-llama-gqa'
    # the exported model's deterministic masks are the ones the run wrote at its last evaluation
    masks = torch.load(tmp_path / 'masks' / 'step6.pt')
    assert record['kept_hidden'] == (masks['hidden'] > 0).nonzero().flatten().tolist()
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer('def main():', return_tensors='pt')['input_ids']
    generated = model.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert generated.shape == (1, ids.shape[1] + 5)
