"""Every callback of this package has typed arguments, checked at config load (before torch) and by the class."""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import get_args

import pytest

from composer_plugins.config.callback_args import (
    DEFAULT_BOUNDED_FLOOR,
    DynamicLoadingConfig,
    PruningMonitorConfig,
    SampleLogConfig,
    WeightRule,
)
from composer_plugins.config.callback_schemas import CALLBACK_SCHEMAS
from composer_plugins.config.foundry import to_foundry_config
from composer_plugins.config.load import load_run_config
from composer_plugins.config.typed import from_dict, to_dict
from composer_plugins.errors import ConfigError
from composer_plugins.registry import ENTRY_POINTS, load_target
from conftest import MIXTURE_YAML, PRUNE_TINY_YAML, REPO_ROOT, TINY_YAML, subprocess_env


@pytest.fixture
def stub_data(tmp_path: Path) -> Path:
    """``{train,eval}/`` and ``<domain>/{train,eval}/`` with empty MDS indexes: all config load reads."""
    for domain in ('', 'alpha', 'beta', 'small'):
        for split in ('train', 'eval'):
            (tmp_path / domain / split).mkdir(parents=True)
            (tmp_path / domain / split / 'index.json').write_text('{"version": 2, "shards": []}')
    return tmp_path


def _load(yaml_path: Path, data_dir: Path, *overrides: str):
    return load_run_config(str(yaml_path), [f'variables.data_dir={data_dir}', 'save_folder=null', *overrides])


def test_every_registered_callback_has_a_schema():
    assert set(CALLBACK_SCHEMAS) == set(ENTRY_POINTS['callbacks'])


def test_the_schemas_match_what_the_callbacks_compute_with():
    from composer_plugins.data.weight_rules import BOUNDED_FLOOR, RULES

    assert set(get_args(WeightRule)) == set(RULES)
    assert DEFAULT_BOUNDED_FLOOR == BOUNDED_FLOOR


@pytest.mark.parametrize(('yaml_path', 'override', 'expected'), [
    (MIXTURE_YAML, 'callbacks.dynamic_loading.rulle=doremi',
     "callbacks.dynamic_loading.rulle: unknown key. Did you mean 'rule'?"),
    (MIXTURE_YAML, 'callbacks.dynamic_loading.weight_file=w.json',
     "callbacks.dynamic_loading.weight_file: unknown key. Did you mean 'weights_file'?"),
    (PRUNE_TINY_YAML, 'callbacks.pruning_monitor.mask_dir=masks',
     "callbacks.pruning_monitor.mask_dir: unknown key. Did you mean 'masks_dir'?"),
    (MIXTURE_YAML, 'callbacks.sample_log.outdir=samples',
     "callbacks.sample_log.outdir: unknown key. Did you mean 'out_dir'?"),
])
def test_a_typo_in_a_callbacks_keys_fails_at_config_load(stub_data, yaml_path, override, expected):
    with pytest.raises(ConfigError) as info:
        _load(yaml_path, stub_data, override)
    assert str(info.value).startswith(expected)
    assert 'Expected one of:' in str(info.value)


@pytest.mark.parametrize(('yaml_path', 'override', 'expected'), [
    (MIXTURE_YAML, 'callbacks.dynamic_loading.rule=greedy',
     "callbacks.dynamic_loading.rule: got 'greedy'; expected one of 'doremi', 'bounded', 'constant'"),
    (MIXTURE_YAML, 'callbacks.dynamic_loading.smoothing=lots',
     "callbacks.dynamic_loading.smoothing: got 'lots' (str); expected float"),
    (MIXTURE_YAML, 'callbacks.dynamic_loading.floor=1.5', 'callbacks.dynamic_loading.floor: got 1.5; expected'),
    (MIXTURE_YAML, 'callbacks.dynamic_loading.clamp_gap=maybe',
     "callbacks.dynamic_loading.clamp_gap: got 'maybe' (str); expected bool"),
    (MIXTURE_YAML, 'callbacks.dynamic_loading={rule: bounded, ref_losses: {alpha: 0.0, beta: 1.0, small: 1.0}}',
     'callbacks.dynamic_loading.ref_losses: rule bounded divides by the reference'),
    (MIXTURE_YAML, 'callbacks.dynamic_loading.ref_losses.beta=.inf',
     "callbacks.dynamic_loading.ref_losses: domain 'beta' has inf; expected a finite number"),
    (MIXTURE_YAML, 'callbacks.sample_log.out_dir=5', 'callbacks.sample_log.out_dir: got 5 (int); expected str'),
    (PRUNE_TINY_YAML, 'callbacks.pruning_monitor=null', 'callbacks.pruning_monitor.masks_dir: required key is missing'),
    (MIXTURE_YAML, 'callbacks.speed_monitor=5', 'callbacks.speed_monitor: got 5; expected a mapping'),
    # the pruning callbacks' arguments are checked with or without model.pruning
    (TINY_YAML, 'callbacks.mask_learning={init: dense, lrr: 1.0}',
     "callbacks.mask_learning.lrr: unknown key. Did you mean 'lr'?"),
])
def test_wrong_callback_values_are_named(stub_data, yaml_path, override, expected):
    with pytest.raises(ConfigError, match='^' + re.escape(expected)):
        _load(yaml_path, stub_data, override)


def test_reference_losses_in_domain_order_are_finite_floats():
    path = 'callbacks.dynamic_loading'
    assert from_dict(DynamicLoadingConfig, {'ref_losses': [1, '2.5']}, path).ref_losses == [1.0, 2.5]
    with pytest.raises(ConfigError, match=re.escape(f"{path}.ref_losses: domain '#1' has inf; expected a finite")):
        from_dict(DynamicLoadingConfig, {'ref_losses': [1.0, float('inf')]}, path)
    with pytest.raises(ConfigError, match=re.escape(f'{path}.ref_losses: required by rule doremi')):
        from_dict(DynamicLoadingConfig, {}, path)
    assert from_dict(DynamicLoadingConfig, {'rule': 'constant'}, path).ref_losses is None


def test_ours_are_typed_others_pass_through(stub_data):
    cfg = _load(MIXTURE_YAML, stub_data, 'callbacks.speed_monitor={window_size: 5, anything: [1]}',
                'callbacks.lr_monitor=null')
    assert cfg.callbacks['dynamic_loading'] == DynamicLoadingConfig(
        rule='doremi', ref_losses={'alpha': 2.0, 'beta': 2.0, 'small': 2.0},
        weights_file='runs/mixture_tiny/domain_weights.json')
    assert cfg.callbacks['sample_log'] == SampleLogConfig(out_dir='runs/mixture_tiny/samples')
    assert cfg.callbacks['speed_monitor'] == {'window_size': 5, 'anything': [1]}
    assert cfg.callbacks['lr_monitor'] is None
    callbacks = to_foundry_config(cfg)['callbacks']
    assert callbacks['speed_monitor'] == {'window_size': 5, 'anything': [1]} and callbacks['lr_monitor'] is None
    assert callbacks['sample_log'] == {'out_dir': 'runs/mixture_tiny/samples'}
    assert callbacks['finite_guard'] == {}
    assert 'wandb_visuals' not in callbacks  # W&B is off: nothing draws for it
    with_wandb = _load(MIXTURE_YAML, stub_data, 'loggers.wandb.enabled=true', 'callbacks.wandb_visuals={dpi: 60}')
    foundry = to_foundry_config(with_wandb)
    assert foundry['callbacks']['wandb_visuals'] == {'heatmap': True, 'tables': True, 'gap': True, 'dpi': 60}
    # offline wandb 0.18 asks the server before logging a table unless this is false (an explicit value wins)
    assert foundry['loggers']['wandb']['init_kwargs'] == {'dir': 'runs/mixture_tiny',
                                                          'settings': {'allow_offline_artifacts': False}}
    assert 'wandb_visuals' not in to_foundry_config(_load(MIXTURE_YAML, stub_data, 'callbacks.wandb_visuals={}'))[
        'callbacks']
    pruning = _load(PRUNE_TINY_YAML, stub_data)
    assert pruning.callbacks['pruning_monitor'] == PruningMonitorConfig(masks_dir='runs/prune_tiny/masks')


def test_callbacks_build_their_arguments_from_the_same_dataclass(stub_data):
    """What llm-foundry hands each callback (``to_foundry_config``) builds the config that was checked at load."""
    built = {}
    for yaml_path, overrides in ((MIXTURE_YAML, ()), (PRUNE_TINY_YAML, ('loggers.wandb.enabled=true',))):
        cfg = _load(yaml_path, stub_data, *overrides)
        for name, kwargs in to_foundry_config(cfg)['callbacks'].items():
            callback = load_target(ENTRY_POINTS['callbacks'][name])(**kwargs)
            assert isinstance(callback.config, CALLBACK_SCHEMAS[name])
            # finite_guard (every run) and wandb_visuals (a run with W&B on) are added by to_foundry_config
            checked = cfg.callbacks[name] if name in cfg.callbacks else CALLBACK_SCHEMAS[name]()
            assert callback.config == checked
            built[name] = callback
    assert set(built) == set(CALLBACK_SCHEMAS)
    for name, callback in built.items():  # the class checks its keys too (a callback built outside a run YAML)
        with pytest.raises(ConfigError, match=rf'^callbacks\.{name}\.colour: unknown key'):
            type(callback)(colour='red', **to_dict(callback.config))


def test_config_load_of_prune_tiny_imports_no_torch(corpus_dir, stub_data):
    """Every callback is checked at load, and still nothing heavy is imported (a typo fails in about a second)."""
    script = textwrap.dedent(f'''
        import sys
        from composer_plugins.config.load import load_run_config
        from composer_plugins.config.callback_schemas import CALLBACK_SCHEMAS
        pruning = load_run_config({str(PRUNE_TINY_YAML)!r}, ['variables.data_dir={corpus_dir}', 'save_folder=null'])
        mixture = load_run_config({str(MIXTURE_YAML)!r}, ['variables.data_dir={stub_data}', 'save_folder=null'])
        callbacks = {{**pruning.callbacks, **mixture.callbacks}}
        assert all(isinstance(callbacks[name], CALLBACK_SCHEMAS[name]) for name in callbacks), callbacks
        assert len(mixture.eval_loaders) == 3
        print(sorted(name for name in ('torch', 'composer', 'llmfoundry', 'transformers') if name in sys.modules))
    ''')
    proc = subprocess.run([sys.executable, '-c', script], cwd=REPO_ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == '[]', proc.stdout
