"""``eval_loaders: {per_domain: ...}``: one ``text`` evaluator per training domain, or one error naming the key."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from composer_plugins.config.eval_loaders import PerDomainEvalConfig, expand_raw_eval_loaders
from composer_plugins.config.load import load_run_config
from composer_plugins.config.loaders import TextDatasetConfig, TextLoaderConfig
from composer_plugins.errors import ConfigError
from conftest import MIXTURE_YAML, REPO_ROOT, TINY_YAML

DOMAINS = ['alpha', 'beta', 'small']


@pytest.fixture
def stub_mixture(tmp_path: Path) -> Path:
    """``<domain>/{train,eval}/index.json`` for the three domains of ``yamls/mixture_tiny.yaml``."""
    for domain in DOMAINS:
        for split in ('train', 'eval'):
            (tmp_path / domain / split).mkdir(parents=True)
            (tmp_path / domain / split / 'index.json').write_text('{"version": 2, "shards": []}')
    return tmp_path


def _load(data_dir: Path, *overrides: str, yaml_path: Path = MIXTURE_YAML):
    return load_run_config(str(yaml_path), [f'variables.data_dir={data_dir}', 'save_folder=null', *overrides])


def test_short_form_gives_one_text_evaluator_per_domain_in_order(stub_mixture):
    cfg = _load(stub_mixture, 'eval_loaders.per_domain.num_workers=1', 'eval_loaders.per_domain.pin_memory=true')
    assert cfg.eval_loaders == [
        TextLoaderConfig(name='text', label=domain, drop_last=False, num_workers=1, pin_memory=True,
                         dataset=TextDatasetConfig(local=str(stub_mixture / domain), split='eval', shuffle=False,
                                                   max_seq_len=128))
        for domain in DOMAINS]
    assert [key for key, _ in cfg.data_folders()][1:] == [f'eval_loaders[{i}].dataset.local' for i in range(3)]


def test_short_form_defaults_and_overrides(stub_mixture):
    cfg = _load(stub_mixture, 'eval_loaders={per_domain: null}')
    assert [(e.dataset.split, e.dataset.max_seq_len, e.drop_last, e.num_workers) for e in cfg.eval_loaders] == [
        ('eval', 128, False, 0)] * 3
    for domain in DOMAINS:
        (stub_mixture / domain / 'eval').rename(stub_mixture / domain / 'held_out')
    cfg = _load(stub_mixture, 'eval_loaders={per_domain: {split: held_out, max_seq_len: 64, shuffle: true}}')
    assert [(e.label, e.dataset.split, e.dataset.max_seq_len, e.dataset.shuffle) for e in cfg.eval_loaders] == [
        (domain, 'held_out', 64, True) for domain in DOMAINS]


def test_short_form_follows_the_train_loaders_remote_or_its_own_local():
    spec = PerDomainEvalConfig(num_workers=2)
    assert spec.loaders(['a', 'b'], '/cache', 's3://bucket/mix/', 32) == [{
        'label': domain, 'name': 'text',
        'dataset': {'local': f'/cache/{domain}', 'remote': f's3://bucket/mix/{domain}', 'split': 'eval',
                    'shuffle': False, 'max_seq_len': 32},
        'drop_last': False, 'num_workers': 2, 'pin_memory': False, 'prefetch_factor': None,
        'persistent_workers': True, 'timeout': 0,
    } for domain in ('a', 'b')]
    own = PerDomainEvalConfig(local='/eval-data', split='test')
    assert [e['dataset']['local'] for e in own.loaders(['a'], '/train-data', None, 32)] == ['/eval-data/a']
    assert 'remote' not in own.loaders(['a'], '/train-data', None, 32)[0]['dataset']


def test_raw_expansion_for_tools_writes_the_same_list():
    raw = {'train_loader': {'name': 'domain_mixture', 'dataset': {'local': '/d', 'domains': ['x', 'y'],
                                                                   'max_seq_len': 16}},
           'eval_loaders': {'per_domain': {'num_workers': 3}}}
    expanded = expand_raw_eval_loaders(raw)
    assert expanded['eval_loaders'] == PerDomainEvalConfig(num_workers=3).loaders(['x', 'y'], '/d', None, 16)
    assert raw['eval_loaders'] == {'per_domain': {'num_workers': 3}}  # the input is left alone
    explicit = {**raw, 'eval_loaders': [{'name': 'text'}]}
    assert expand_raw_eval_loaders(explicit) is explicit


@pytest.mark.parametrize(('overrides', 'expected'), [
    (['eval_loaders.per_domain.num_worker=2'],
     "eval_loaders.per_domain.num_worker: unknown key. Did you mean 'num_workers'?"),
    (['eval_loaders.per_domian={split: eval}'], "eval_loaders.per_domian: unknown key. Did you mean 'per_domain'?"),
    (['eval_loaders.per_domain.label=alpha'], 'eval_loaders.per_domain.label: unknown key.'),  # the domain's
    (['eval_loaders.per_domain.num_workers=two'], "eval_loaders.per_domain.num_workers: got 'two' (str); expected int"),
    (['eval_loaders=5'], 'eval_loaders: got 5; expected a list of text loaders or {per_domain: {...}}'),
    (['eval_loaders.per_domain.split=test'], "eval_loaders.per_domain[alpha].dataset.local: no MDS index at '"),
])
def test_bad_evaluators_are_one_error_naming_the_key(stub_mixture, overrides, expected):
    with pytest.raises(ConfigError, match='^' + re.escape(expected)):
        _load(stub_mixture, *overrides)


def test_explicit_list_errors_are_named_as_before(corpus_dir):
    with pytest.raises(ConfigError, match=re.escape("eval_loaders[1].labl: unknown key. Did you mean 'label'?")):
        _load(corpus_dir, 'eval_loader=null', f'eval_loaders=[{{name: text, dataset: {{local: {corpus_dir}, '
              f'split: eval, max_seq_len: 128}}}}, {{name: text, dataset: {{local: /x, max_seq_len: 8}}, labl: a}}]',
              yaml_path=TINY_YAML)


def test_short_form_needs_a_domain_mixture_train_loader(corpus_dir):
    with pytest.raises(ConfigError, match=r'^eval_loaders\.per_domain: needs train_loader\.name: domain_mixture'):
        _load(corpus_dir, 'eval_loader=null', 'eval_loaders={per_domain: {split: eval}}', yaml_path=TINY_YAML)
    with pytest.raises(ConfigError, match=r'^eval_loaders\.per_domain: needs train_loader\.name: domain_mixture'):
        expand_raw_eval_loaders({'train_loader': {'name': 'text'}, 'eval_loaders': {'per_domain': {}}})


def test_an_override_of_another_container_type_is_one_error_naming_it():
    from composer_plugins.config.load import load_yaml_with_overrides

    yaml_path = str(REPO_ROOT / 'yamls' / 'prune.yaml')
    with pytest.raises(ConfigError, match=r"override 'eval_loaders=\[1, 2\]': cannot merge"):
        load_yaml_with_overrides(yaml_path, ['eval_loaders=[1, 2]'])


def test_persistent_workers_unset_follows_the_workers_and_a_written_value_wins():
    """llm-foundry's default (true) where there are workers; torch refuses it without workers."""
    assert PerDomainEvalConfig(num_workers=2).persistent_workers is True
    assert PerDomainEvalConfig().persistent_workers is False
    assert PerDomainEvalConfig(num_workers=2, persistent_workers=False).persistent_workers is False


@pytest.mark.parametrize('key, value', [('persistent_workers', 'true'), ('prefetch_factor', '2')])
@pytest.mark.parametrize('loader', ['train_loader', 'eval_loaders.per_domain'])
def test_worker_keys_without_workers_are_one_error_naming_the_key(stub_mixture, loader, key, value):
    """torch refuses these with ``num_workers: 0``; the config says so at load, naming the loader's key."""
    with pytest.raises(ConfigError, match=rf'^{re.escape(loader)}\.{key}: got .* with num_workers: 0'):
        _load(stub_mixture, f'{loader}.num_workers=0', f'{loader}.{key}={value}')
    _load(stub_mixture, f'{loader}.num_workers=1', f'{loader}.{key}={value}')  # with a worker both are fine


def test_a_negative_worker_count_is_one_error_naming_the_key(stub_mixture):
    with pytest.raises(ConfigError, match=r'^train_loader\.num_workers: got -1; expected 0 or more'):
        _load(stub_mixture, 'train_loader.num_workers=-1')
