"""llm-foundry users' YAMLs work here, and the recipe's rules hold on every entry path.

* every key of llm-foundry's ``TrainConfig`` is accepted (and handed on) or refused with a reason;
* llm-foundry's published MPT-125M pretraining YAML, with only the model, the tokenizer and the
  data paths changed, trains through ``train.py`` and through llm-foundry's ``train_from_yaml``;
* the shipped tiny YAMLs run unchanged through ``train_from_yaml`` with the recipe's checks;
* half precision and gradient clipping with masks do what the README says.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from composer_plugins.config.foundry import to_foundry_config
from composer_plugins.config.foundry_keys import NOT_SUPPORTED, NOT_SUPPORTED_WITH_PRUNING, foundry_train_keys
from composer_plugins.config.load import load_run_config, load_yaml_with_overrides
from composer_plugins.config.schema import RunConfig
from composer_plugins.config.typed import from_dict
from composer_plugins.errors import ConfigError
from conftest import MIXTURE_YAML, PRUNE_TINY_YAML, TINY_YAML

# llm-foundry's scripts/train/yamls/pretrain/mpt-125m.yaml (its `variables` form), with only `model`,
# `tokenizer` and the data paths changed to a tiny shear_causal_lm run on the test corpus. Its
# fsdp_config keeps the keys that mean something under FSDP2 (FSDP1's sharding_strategy,
# limit_all_gathers and activation_checkpointing_reentrant are refused with that reason).
MPT_125M_YAML = """\
variables:
  data_local: {data_local}
  data_remote:  # If blank, files must be present in data_local
  max_seq_len: 128
  global_seed: 17
  run_name:  # If left blank, will be read from env var $RUN_NAME

max_seq_len: ${{variables.max_seq_len}}
run_name: ${{variables.run_name}}

model:
  name: shear_causal_lm
  source: tiny-llama
  pretrained: false

tokenizer:
  name: byte-level

train_loader:
  name: text
  dataset:
    local: ${{variables.data_local}}
    remote: ${{variables.data_remote}}
    split: train
    shuffle: true
    max_seq_len: ${{variables.max_seq_len}}
    shuffle_seed: ${{variables.global_seed}}
  drop_last: true
  num_workers: 8

eval_loader:
  name: text
  dataset:
    local: ${{variables.data_local}}
    remote: ${{variables.data_remote}}
    split: eval
    shuffle: false
    max_seq_len: ${{variables.max_seq_len}}
    shuffle_seed: ${{variables.global_seed}}
  drop_last: false
  num_workers: 8

scheduler:
  name: cosine_with_warmup
  t_warmup: 100ba
  alpha_f: 0.1

optimizer:
  name: decoupled_adamw
  lr: 6.0e-4
  betas:
  - 0.9
  - 0.95
  eps: 1.0e-08
  weight_decay: 0.0

algorithms:
  gradient_clipping:
    clipping_type: norm
    clipping_threshold: 1.0

max_duration: 4800ba  # ~ 2.5B tokens
eval_interval: 500ba
eval_first: false
eval_subset_num_batches: -1
global_train_batch_size: 256

seed: ${{variables.global_seed}}
device_eval_batch_size: 16
device_train_microbatch_size: 16
precision: amp_bf16

fsdp_config:
  mixed_precision: PURE
  activation_checkpointing: false
  activation_cpu_offload: false
  verbose: false

progress_bar: false
log_to_console: true
console_log_interval: 1ba

callbacks:
  speed_monitor:
    window_size: 10
  lr_monitor: {{}}
  memory_monitor: {{}}
  runtime_estimator: {{}}
"""
CPU_SIZED = ['precision=fp32', 'max_duration=2ba', 'global_train_batch_size=4', 'device_train_microbatch_size=2',
             'device_eval_batch_size=2', 'eval_interval=2ba', 'eval_subset_num_batches=1',
             'train_loader.num_workers=0', 'eval_loader.num_workers=0']
"""Command-line overrides that size the published run for a CPU test (CPU training is fp32 only; its 8 workers a
loader cost 45 s of the test's 53 on 2 cores and are not what it checks)."""


def _raw(yaml_path: Path, data_dir: Path) -> dict:
    return load_yaml_with_overrides(str(yaml_path), [f'variables.data_dir={data_dir}', 'save_folder=null'])


def test_every_foundry_train_key_is_handed_on_or_refused_with_a_reason(corpus_dir):
    from llmfoundry.utils.config_utils import TRAIN_CONFIG_KEYS

    assert foundry_train_keys() == TRAIN_CONFIG_KEYS  # read from llm-foundry's source, not copied
    typed = {f.name for f in dataclasses.fields(RunConfig)} - {'foundry_keys'}
    for yaml_path, pruning in ((TINY_YAML, False), (PRUNE_TINY_YAML, True)):
        raw = _raw(yaml_path, corpus_dir)
        for key in sorted(TRAIN_CONFIG_KEYS - typed):
            value = {'written': key}  # llm-foundry's to check: handed on as written
            reason = NOT_SUPPORTED.get(key) or (NOT_SUPPORTED_WITH_PRUNING.get(key) if pruning else None)
            if reason is None:
                assert to_foundry_config(from_dict(RunConfig, {**copy.deepcopy(raw), key: value}))[key] == value
                continue
            with pytest.raises(ConfigError) as err:
                from_dict(RunConfig, {**copy.deepcopy(raw), key: value})
            assert str(err.value).startswith(f"{key}: llm-foundry's key, not supported")
            assert reason in str(err.value) and '\n' not in str(err.value)
    assert 'tp_config' in NOT_SUPPORTED_WITH_PRUNING and 'tp_config' not in NOT_SUPPORTED


def test_nested_foundry_keys_are_handed_on(corpus_dir):
    cfg = load_run_config(str(TINY_YAML), [f'variables.data_dir={corpus_dir}', 'save_folder=null',
                                           'optimizer.amsgrad=true', 'scheduler.scale_warmup=true',
                                           'train_loader.dataset.predownload=64', 'model.init_device=cpu'])
    handed = to_foundry_config(cfg)
    assert handed['optimizer']['amsgrad'] is True and handed['scheduler']['scale_warmup'] is True
    assert handed['train_loader']['dataset']['predownload'] == 64
    with pytest.raises(ConfigError, match=r"^train_loader\.dataset\.predownlaod: unknown key\. Did you mean "):
        load_run_config(str(TINY_YAML), [f'variables.data_dir={corpus_dir}', 'train_loader.dataset.predownlaod=1'])


def test_registry_argument_tables_match_the_registered_classes():
    import inspect

    from llmfoundry import registry

    from composer_plugins.config.registry_args import OPTIMIZER_ARGS, SCHEDULER_ARGS
    from composer_plugins.registry import register_all

    register_all()
    for table, llmfoundry_registry in ((OPTIMIZER_ARGS, registry.optimizers), (SCHEDULER_ARGS, registry.schedulers)):
        for name, args in table.items():
            signature = inspect.signature(llmfoundry_registry.get(name)).parameters
            assert args == set(signature) - {'self', 'params'}, name


def test_a_key_of_neither_fails_fast_with_a_suggestion(corpus_dir):
    raw = _raw(TINY_YAML, corpus_dir)
    with pytest.raises(ConfigError, match=r"^save_filenam: unknown key\. Did you mean 'save_filename'\?"):
        from_dict(RunConfig, {**raw, 'save_filenam': 'x'})


def test_llm_foundry_published_yaml_trains_through_train_py_and_train_from_yaml(corpus_dir, tmp_path):
    from llmfoundry.command_utils import train_from_yaml

    from composer_plugins.callbacks.finite_guard import FiniteGuard
    from composer_plugins.registry import register_all
    from composer_plugins.train_entry import main

    path = tmp_path / 'mpt-125m.yaml'
    path.write_text(MPT_125M_YAML.format(data_local=corpus_dir))
    assert main([str(path), *CPU_SIZED]) == 0
    register_all()  # a checkout that is not installed; an installed one has the entry points
    trainer = train_from_yaml(str(path), CPU_SIZED)
    assert int(trainer.state.timestamp.batch) == 2
    assert any(isinstance(c, FiniteGuard) for c in trainer.state.callbacks)  # the recipe's transform ran


def test_shipped_pruning_yaml_runs_unchanged_through_train_from_yaml(corpus_dir, tmp_path):
    from llmfoundry.command_utils import train_from_yaml

    from composer_plugins.callbacks.finite_guard import FiniteGuard
    from composer_plugins.registry import register_all

    register_all()
    trainer = train_from_yaml(str(PRUNE_TINY_YAML), [f'variables.data_dir={corpus_dir}',
                                                      f'variables.run_dir={tmp_path}', 'max_duration=12ba'])
    assert any(isinstance(c, FiniteGuard) for c in trainer.state.callbacks)
    masks = trainer.state.model.pruner.l0_masks
    for name, target in masks.target_sparsity().items():  # the settle phase ends each mask on its target
        assert float(masks.expected_row_sparsity()[name].mean()) == pytest.approx(target, abs=0.02), name


def test_shipped_mixture_yaml_runs_unchanged_through_train_from_yaml(mixture_dir, tmp_path):
    from llmfoundry.command_utils import train_from_yaml

    from composer_plugins.registry import register_all

    register_all()
    trainer = train_from_yaml(str(MIXTURE_YAML), [f'variables.data_dir={mixture_dir}',
                                                   f'variables.run_dir={tmp_path}', 'max_duration=4ba'])
    assert int(trainer.state.timestamp.batch) == 4
    assert (tmp_path / 'domain_weights.json').exists()
    assert 'FiniteGuard' in {type(c).__name__ for c in trainer.state.callbacks}


def test_same_errors_on_both_entry_paths(corpus_dir, tmp_path):
    from llmfoundry.command_utils import train_from_yaml

    from composer_plugins.registry import register_all

    register_all()
    data = tmp_path / 'data'
    shutil.copytree(corpus_dir, data)
    (data / 'manifest.json').write_text(json.dumps({'tokenizer': 'byte-level', 'vocab_size': 258}))  # as shear prep
    overrides = [f'variables.data_dir={data}', f'variables.run_dir={tmp_path}']
    vocab = ['model.config_overrides.vocab_size=200']
    with pytest.raises(ConfigError) as direct:
        load_run_config(str(PRUNE_TINY_YAML), overrides + vocab)
    with pytest.raises(ConfigError) as foundry:
        train_from_yaml(str(PRUNE_TINY_YAML), overrides + vocab)
    assert 'vocab_size 200' in str(direct.value) and str(foundry.value) == str(direct.value)

    without = yaml.safe_load(PRUNE_TINY_YAML.read_text())
    del without['callbacks']['lagrangian']
    path = tmp_path / 'no_lagrangian.yaml'
    path.write_text(yaml.safe_dump(without))
    with pytest.raises(ConfigError, match=r'^callbacks\.lagrangian: required with model\.pruning'):
        train_from_yaml(str(path), overrides)
    assert not (tmp_path / 'checkpoints').exists()


def test_a_trainer_built_by_hand_refuses_masks_without_both_callbacks():
    from composer import Trainer

    from composer_plugins.callbacks.mask_learning import MaskLearning
    from composer_plugins.models.causal_lm import ShearCausalLM

    pruning = {'target': {'num_layers': 2, 'hidden_size': 48, 'num_attention_heads': 2, 'num_key_value_heads': 1,
                          'intermediate_size': 96}}
    model = ShearCausalLM('tiny-llama-gqa', pretrained=False, pruning=pruning,
                          config_overrides={'num_hidden_layers': 4})
    with pytest.raises(ConfigError, match=r'^callbacks\.lagrangian: required with model\.pruning'):
        Trainer(model=model, callbacks=[MaskLearning(init='dense')], max_duration='1ba')  # at Event.INIT
    model.train()
    with pytest.raises(ConfigError, match=r'^callbacks\.mask_learning: required'):  # no callback at all: 1st batch
        model({'input_ids': torch.zeros(1, 8, dtype=torch.long)})


def test_amp_fp16_with_masks_is_refused_at_load_naming_amp_bf16(corpus_dir):
    overrides = [f'variables.data_dir={corpus_dir}', 'save_folder=null', 'precision=amp_fp16']
    with pytest.raises(ConfigError, match=r'^precision: amp_fp16 is not supported with model\.pruning.*amp_bf16'):
        load_run_config(str(PRUNE_TINY_YAML), overrides)
    load_run_config(str(TINY_YAML), overrides)  # without masks: Composer's scaler covers every optimizer


def test_gradient_clipping_clips_the_weights_not_the_masks(corpus_dir, tmp_path):
    """After one batch with a clipping threshold of 1e-6 the weights moved less, the masks and multipliers the same."""
    from composer_plugins.train_entry import run

    def one_batch(*extra: str) -> dict[str, torch.Tensor]:
        cfg = load_run_config(str(PRUNE_TINY_YAML), [
            f'variables.data_dir={corpus_dir}', f'variables.run_dir={tmp_path}', 'save_folder=null',
            'max_duration=1ba', 'eval_interval=1000ba', 'callbacks.mask_learning.settle=0', *extra])
        model = run(cfg).state.model
        return {name: p.detach().double().clone() for name, p in model.named_parameters()}

    plain = one_batch()
    clipped = one_batch('algorithms={gradient_clipping: {clipping_type: norm, clipping_threshold: 1.0e-6}}')
    pruner = [n for n in plain if '.pruner.' in f'.{n}']
    weights = [n for n in plain if n not in pruner]
    assert pruner and all(torch.equal(plain[n], clipped[n]) for n in pruner)
    assert any(not torch.equal(plain[n], clipped[n]) for n in weights)
