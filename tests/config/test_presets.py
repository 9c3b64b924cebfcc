"""Every shipped run YAML loads and validates; the presets' targets have the stated sizes."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from composer_plugins.config.foundry import to_foundry_config
from composer_plugins.config.load import load_run_config
from composer_plugins.config.schema import FsdpConfig
from composer_plugins.models.source_shape import HUB_ALIASES, KNOWN_SHAPES
from composer_plugins.pruning.shapes import (
    ModelShape,
    count_non_embedding_params,
    count_params,
    validate_target,
)
from conftest import REPO_ROOT

YAML_DIR = REPO_ROOT / 'yamls'
PRESET_DIR = YAML_DIR / 'presets'
PRESETS = sorted(PRESET_DIR.glob('*.yaml'))
ALL_YAMLS = sorted(YAML_DIR.glob('*.yaml')) + PRESETS

LLAMA2_7B = ModelShape(num_layers=32, hidden_size=4096, num_attention_heads=32, num_key_value_heads=32,
                       head_dim=128, intermediate_size=11008, vocab_size=32000, tie_word_embeddings=False)
LLAMA31_8B = ModelShape(num_layers=32, hidden_size=4096, num_attention_heads=32, num_key_value_heads=8,
                        head_dim=128, intermediate_size=14336, vocab_size=128256, tie_word_embeddings=False)
SMOLLM2_135M = ModelShape(num_layers=30, hidden_size=576, num_attention_heads=9, num_key_value_heads=3,
                          head_dim=64, intermediate_size=1536, vocab_size=49152, tie_word_embeddings=True)


@pytest.fixture(scope='module')
def stub_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``[<domain>/]{train,eval}/index.json``: all that config validation looks at."""
    root = tmp_path_factory.mktemp('stub-mds')
    domains = ('', 'alpha', 'beta', 'small', 'code', 'docs', 'licenses',
               'cc', 'github', 'book', 'stackexchange', 'wiki', 'arxiv', 'c4-rp')
    for domain in domains:
        for split in ('train', 'eval'):
            (root / domain / split).mkdir(parents=True)
            (root / domain / split / 'index.json').write_text('{"version": 2, "shards": []}')
    (root / 'domain_weights.json').write_text('{"batch": 10, "domains": {"alpha": 0.5, "beta": 0.3, "small": 0.2}}')
    (root / 'embedded').mkdir()
    (root / 'embedded' / 'domain_weights.json').write_text(
        '{"batch": 30, "domains": {"code": 0.5, "docs": 0.3, "licenses": 0.2}}')
    return root


def _smollm2_config_dir(root: Path) -> Path:
    """A folder holding SmolLM2-135M's config.json (its published fields) and a tokenizer config (prune.yaml's
    tokenizer is the model folder; config load only checks that the folder holds a tokenizer)."""
    folder = root / 'smollm2-135m-config'
    folder.mkdir(exist_ok=True)
    (folder / 'config.json').write_text(json.dumps(KNOWN_SHAPES['smollm2-135m']))
    (folder / 'tokenizer_config.json').write_text('{}')
    return folder


def _load(path: Path, data_dir: Path):
    """Load ``path`` with the stub data; a ``variables.model_dir`` becomes a tiny model so that
    validation does not depend on which model directories exist on this machine."""
    variables = yaml.safe_load(path.read_text()).get('variables') or {}
    overrides = [f'variables.data_dir={data_dir}']
    model_dir = variables.get('model_dir')
    if model_dir == 'models/smollm2-135m':  # the target is checked against the source's config.json
        overrides.append(f'variables.model_dir={_smollm2_config_dir(data_dir)}')
    elif model_dir is not None and model_dir not in HUB_ALIASES:  # hub ids of known shapes stay
        overrides.append('variables.model_dir=tiny-llama')
    if 'prev_run_dir' in variables:
        overrides.append(f'variables.prev_run_dir={data_dir}')
    if 'prune_run_dir' in variables:
        overrides.append(f'variables.prune_run_dir={data_dir / "embedded"}')
    return load_run_config(str(path), overrides)


def _ids(paths):
    return [str(p.relative_to(YAML_DIR)) for p in paths]


def test_expected_yamls_exist():
    names = set(_ids(ALL_YAMLS))
    for name in ('prune.yaml', 'prune_tiny.yaml', 'tiny.yaml', 'presets/llama2_7b_to_1.3b.yaml',
                 'presets/llama2_7b_to_2.7b.yaml', 'presets/llama3.1_8b_to_4b.yaml'):
        assert name in names


@pytest.mark.parametrize('path', ALL_YAMLS, ids=_ids(ALL_YAMLS))
def test_yaml_loads_and_validates(path, stub_data_dir):
    cfg = _load(path, stub_data_dir)
    assert cfg.train_loader.dataset.local == str(stub_data_dir)
    if cfg.model.pruning is not None:
        assert {'mask_learning', 'lagrangian', 'pruning_monitor'} <= set(cfg.callbacks)
        assert cfg.callbacks['mask_learning'].init == 'importance'  # the default start


@pytest.mark.parametrize(('name', 'default_model'), [
    ('prune.yaml', 'models/smollm2-135m'),
    ('presets/llama2_7b_to_1.3b.yaml', 'meta-llama/Llama-2-7b-hf'),
    ('presets/llama2_7b_to_2.7b.yaml', 'meta-llama/Llama-2-7b-hf'),
    ('presets/llama3.1_8b_to_4b.yaml', 'meta-llama/Llama-3.1-8B'),
])
def test_model_and_tokenizer_default_to_model_dir(name, default_model):
    raw = yaml.safe_load((YAML_DIR / name).read_text())
    assert raw['variables']['model_dir'] == default_model
    assert raw['model']['source'] == '${variables.model_dir}'
    assert raw['tokenizer']['name'] == '${variables.model_dir}'


def test_llama2_7b_source_size():
    assert round(count_params(LLAMA2_7B) / 1e6, 1) == 6738.4


@pytest.mark.parametrize(('name', 'millions'), [
    ('llama2_7b_to_1.3b.yaml', 1345.4),
    ('llama2_7b_to_2.7b.yaml', 2701.6),
])
def test_llama2_preset_target_size(name, millions, stub_data_dir):
    cfg = _load(PRESET_DIR / name, stub_data_dir)
    target = cfg.model.pruning.target.to_shape(LLAMA2_7B)
    validate_target(LLAMA2_7B, target)
    assert round(count_params(target) / 1e6, 1) == millions
    assert target.num_key_value_heads == target.num_attention_heads  # MHA stays MHA
    assert cfg.callbacks['lagrangian'].target_warmup == '640ba'
    assert cfg.max_duration == '3200ba'
    assert cfg.global_train_batch_size == 32
    assert cfg.max_seq_len == 4096
    assert cfg.optimizer.lr == pytest.approx(1e-4)
    assert cfg.callbacks['mask_learning'].lr == pytest.approx(1.0)
    assert cfg.callbacks['lagrangian'].lr == pytest.approx(1.0)
    assert cfg.precision == 'amp_bf16'
    assert cfg.autoresume and cfg.run_name


def test_llama31_preset_matches_its_comment(stub_data_dir):
    path = PRESET_DIR / 'llama3.1_8b_to_4b.yaml'
    cfg = _load(path, stub_data_dir)
    target = cfg.model.pruning.target.to_shape(LLAMA31_8B)
    validate_target(LLAMA31_8B, target)
    assert {'kv_group', 'head'} <= set(cfg.model.pruning.mask_types)
    text = path.read_text()
    stated_source = re.search(r'^#\s+source .*?: ([\d,]+)', text, re.MULTILINE)
    stated_target = re.search(r'^#\s+target .*?: ([\d,]+)', text, re.MULTILINE)
    assert stated_source and stated_target
    assert count_params(LLAMA31_8B) == int(stated_source.group(1).replace(',', ''))
    assert count_params(target) == int(stated_target.group(1).replace(',', ''))
    assert 0.45 <= count_params(target) / count_params(LLAMA31_8B) <= 0.55


def test_prune_yaml_halves_smollm2(stub_data_dir):
    path = YAML_DIR / 'prune.yaml'
    cfg = _load(path, stub_data_dir)
    target = cfg.model.pruning.target.to_shape(SMOLLM2_135M)
    validate_target(SMOLLM2_135M, target)
    source_n, target_n = count_non_embedding_params(SMOLLM2_135M), count_non_embedding_params(target)
    assert 0.45 <= target_n / source_n <= 0.55
    text = path.read_text()
    for number in (source_n, target_n, count_params(SMOLLM2_135M), count_params(target)):
        assert f'{number:,}' in text  # the header comment states the computed sizes
    assert cfg.callbacks['mask_learning'].settle == '6ba'


@pytest.mark.parametrize(('name', 'source'), [
    ('prune.yaml', SMOLLM2_135M),
    ('presets/llama2_7b_to_1.3b.yaml', LLAMA2_7B),
    ('presets/llama2_7b_to_2.7b.yaml', LLAMA2_7B),
    ('presets/llama3.1_8b_to_4b.yaml', LLAMA31_8B),
])
def test_mask_types_can_reach_the_target(name, source, stub_data_dir):
    masks = pytest.importorskip('composer_plugins.pruning.masks')
    pruning = _load(YAML_DIR / name, stub_data_dir).model.pruning
    specs = masks.build_mask_specs(source, pruning.target.to_shape(source), pruning.mask_types)
    assert specs


@pytest.mark.parametrize('name', ['llama2_7b_to_1.3b.yaml', 'llama2_7b_to_2.7b.yaml'])
def test_llama2_presets_use_dynamic_loading_over_the_paper_domains(name, stub_data_dir):
    cfg = _load(PRESET_DIR / name, stub_data_dir)
    domains = cfg.train_loader.dataset.domains
    assert domains == ['cc', 'github', 'book', 'stackexchange', 'wiki', 'arxiv', 'c4-rp']
    assert sum(cfg.train_loader.dataset.weights) == pytest.approx(1.0)
    assert [loader.label for loader in cfg.eval_loaders] == domains
    assert sorted(cfg.callbacks['dynamic_loading'].ref_losses) == sorted(domains)
    assert cfg.eval_interval == f'{cfg.train_loader.dataset.interval_batches}ba'


# The evaluator block each per-domain YAML repeated once per domain before `eval_loaders: {per_domain: ...}`.
EXPLICIT_EVALUATOR = '''\
  - label: {domain}
    name: text
    dataset:
      local: ${{variables.data_dir}}/{domain}
      split: eval
      shuffle: false
      max_seq_len: ${{variables.max_seq_len}}
    drop_last: false
    num_workers: {num_workers}
'''
PER_DOMAIN_YAMLS = ['presets/llama2_7b_to_1.3b.yaml', 'presets/llama2_7b_to_2.7b.yaml', 'prune.yaml',
                    'continue_pretrain.yaml', 'mixture_tiny.yaml', 'continue_tiny.yaml']


def _with_explicit_evaluators(path: Path, folder: Path) -> Path:
    """A copy of ``path`` whose ``eval_loaders: {per_domain: ...}`` block is written out as the explicit list."""
    text = path.read_text()
    short = re.search(r'^eval_loaders:\n(?:  .*\n)+', text, re.MULTILINE).group(0)
    spec = yaml.safe_load(short)['eval_loaders']
    assert list(spec) == ['per_domain'] and spec['per_domain']['split'] == 'eval'
    domains = yaml.safe_load(text)['train_loader']['dataset']['domains']
    explicit = 'eval_loaders:\n' + ''.join(
        EXPLICIT_EVALUATOR.format(domain=d, num_workers=spec['per_domain']['num_workers']) for d in domains)
    copy = folder / path.name
    copy.write_text(text.replace(short, explicit))
    return copy


@pytest.mark.parametrize('name', PER_DOMAIN_YAMLS)
def test_per_domain_evaluators_are_the_explicit_list_they_replaced(name, stub_data_dir, tmp_path):
    short_form = _load(YAML_DIR / name, stub_data_dir)
    explicit = _load(_with_explicit_evaluators(YAML_DIR / name, tmp_path), stub_data_dir)
    assert [loader.label for loader in short_form.eval_loaders] == short_form.train_loader.dataset.domains
    assert short_form.eval_loaders == explicit.eval_loaders
    assert short_form.data_folders() == explicit.data_folders()
    built, expected = to_foundry_config(short_form), to_foundry_config(explicit)
    assert built['eval_loaders'] == expected['eval_loaders']
    assert built == expected


def test_llama2_preset_per_domain_evaluators_in_full(stub_data_dir):
    """What llm-foundry receives for the 1.3B preset: its seven evaluators, spelled out."""
    cfg = _load(PRESET_DIR / 'llama2_7b_to_1.3b.yaml', stub_data_dir)
    domains = ['cc', 'github', 'book', 'stackexchange', 'wiki', 'arxiv', 'c4-rp']
    assert to_foundry_config(cfg)['eval_loaders'] == [{
        'label': domain, 'name': 'text',
        'dataset': {'local': f'{stub_data_dir}/{domain}', 'max_seq_len': 4096, 'split': 'eval', 'shuffle': False,
                    'shuffle_seed': 9176},
        'drop_last': False, 'num_workers': 2, 'pin_memory': False, 'prefetch_factor': None,
        'persistent_workers': True, 'timeout': 0,
    } for domain in domains]


# What every preset's fsdp_config must say (see the comments in the presets).
PRESET_FSDP = FsdpConfig(
    state_dict_type='sharded',         # DCP folders, resharded on load: resume on another GPU count
    mixed_precision='FULL',            # the pruner stays fp32; bf16 compute comes from amp_bf16
    reshard_after_forward=True,        # full sharding
    activation_checkpointing=True,
    activation_cpu_offload=False,
)


@pytest.mark.parametrize('path', PRESETS, ids=_ids(PRESETS))
def test_preset_is_an_fsdp2_run_that_can_resume_elsewhere(path, stub_data_dir):
    cfg = _load(path, stub_data_dir)
    assert cfg.fsdp_config == PRESET_FSDP
    assert cfg.precision == 'amp_bf16'
    assert cfg.autoresume and cfg.run_name and cfg.save_folder and cfg.save_interval
    for gpus in (1, 2, 4, 8, 16, 32):  # the GPU counts the header comment promises
        assert cfg.global_train_batch_size % gpus == 0
    text = path.read_text()
    name = f'yamls/presets/{path.name}'
    assert f'FSDP_VERSION=2 composer -n 8 train.py {name}' in text
    assert f'launch/single_node.sh {name}' in text and f'launch/multi_node_composer.sh {name}' in text


@pytest.mark.parametrize('path', PRESETS, ids=_ids(PRESETS))
def test_composer_takes_every_preset_fsdp_key_as_fsdp2(path, stub_data_dir):
    """What the trainer does with ``FSDP_VERSION=2``: ``FSDP2Config.from_compatible_attrs``, which
    drops (with a warning) any key FSDP2 does not know; none may be dropped."""
    import warnings

    from composer.core.precision import Precision
    from composer.distributed.fsdp2 import create_mixed_precision_policy
    from composer.utils.parallelism import FSDP2Config

    fsdp = to_foundry_config(_load(path, stub_data_dir))['fsdp_config']
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        fsdp2 = FSDP2Config.from_compatible_attrs(fsdp)
    assert not [w for w in caught if 'not a settable attribute' in str(w.message)]
    assert (fsdp2.state_dict_type, fsdp2.mixed_precision, fsdp2.reshard_after_forward,
            fsdp2.activation_checkpointing, fsdp2.activation_cpu_offload) == ('sharded', 'FULL', True, True, False)
    policy = create_mixed_precision_policy(Precision.AMP_BF16, fsdp2.mixed_precision)
    assert policy.param_dtype is None and policy.reduce_dtype is None  # fp32 parameters and gradient reduction
