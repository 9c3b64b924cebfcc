"""``callbacks.dynamic_loading.ref_losses: {scaling_law: CSV}``: references from L(N) = E + A / N^alpha.

The fit inside the callback is the fit of ``shear ref-loss fit CSV --target-params N``, with ``N``
the parameter count of the run's pruning target; a bad CSV is one error naming the key and the
file, at config load where it can be known (without torch) and at fit start for the fit itself.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from composer_plugins.config.callback_args import DynamicLoadingConfig, ScalingLawRefs
from composer_plugins.config.load import load_run_config
from composer_plugins.config.typed import from_dict
from composer_plugins.data.sizes_csv import parse_param_count
from composer_plugins.errors import ConfigError, ShearError
from composer_plugins.pruning.shapes import ModelShape, count_params
from conftest import MIXTURE_YAML, REPO_ROOT, subprocess_env

KEY = 'callbacks.dynamic_loading.ref_losses'
DOMAINS = ['alpha', 'beta', 'small']  # yamls/mixture_tiny.yaml's
# Known laws L(N) = E + A / (N / 1e9)^alpha, in the CSV's column order (not the run's) plus a column the run lacks.
LAWS = {'small': (0.9, 0.05, 0.4), 'unused': (1.0, 0.1, 0.2), 'alpha': (1.6, 0.08, 0.3), 'beta': (1.4, 0.12, 0.25)}
SIZES = ('20K', '60K', '200K', '1M', '5M')
PRUNING = {'target': {'num_layers': 2, 'num_attention_heads': 2, 'num_key_value_heads': 2, 'hidden_size': 48,
                      'intermediate_size': 96}}


def _law(n: float, E: float, A: float, alpha: float) -> float:
    return E + A / (n / 1e9) ** alpha


def _sizes_csv(path: Path, sizes=SIZES, laws=LAWS) -> Path:
    lines = ['# losses of a made-up family (a comment line)', 'params,' + ','.join(laws)]
    lines += [','.join([s] + [f'{_law(parse_param_count(s), *law):.8f}' for law in laws.values()]) for s in sizes]
    path.write_text('\n'.join(lines) + '\n')
    return path


class RecordingLogger:
    """Stands in for Composer's ``Logger``: keeps what the callback logs."""

    def __init__(self) -> None:
        self.hyperparameters: dict = {}
        self.metrics: dict = {}

    def log_hyperparameters(self, values: dict) -> None:
        self.hyperparameters.update(values)

    def log_metrics(self, values: dict, step=None) -> None:
        self.metrics.update(values)


@pytest.fixture
def stub_data(tmp_path: Path) -> Path:
    """``<domain>/{train,eval}/index.json`` (empty MDS indexes): all that config load reads."""
    root = tmp_path / 'data'
    for domain in DOMAINS:
        for split in ('train', 'eval'):
            (root / domain / split).mkdir(parents=True)
            (root / domain / split / 'index.json').write_text('{"version": 2, "shards": []}')
    return root


def _mixture_yaml(tmp_path: Path, ref_losses: str, name: str = 'mixture_scaling_law.yaml') -> Path:
    """``yamls/mixture_tiny.yaml`` with ``ref_losses: <ref_losses>`` (a key=value override would merge maps)."""
    text = MIXTURE_YAML.read_text()
    old = '    ref_losses: {alpha: 2.0, beta: 2.0, small: 2.0}\n'
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, f'    ref_losses: {ref_losses}\n'))
    return path


def _load(yaml_path: Path, data_dir: Path, *overrides: str):
    return load_run_config(str(yaml_path), [f'variables.data_dir={data_dir}', 'save_folder=null', *overrides])


# --------------------------------------------------------------------------- the fit inside the callback


def test_callback_fit_equals_shear_ref_loss_fit_at_the_pruning_target(tmp_path, caplog):
    from composer_plugins.callbacks.dynamic_loading import DynamicLoading
    from composer_plugins.cli.main import main
    from composer_plugins.models.causal_lm import ShearCausalLM

    csv_path = _sizes_csv(tmp_path / 'sizes.csv')
    model = ShearCausalLM('tiny-llama', pretrained=False, pruning=PRUNING)
    target = count_params(model.pruner.target)
    assert target == count_params(ModelShape(num_layers=2, hidden_size=48, num_attention_heads=2, num_key_value_heads=2,
                                             head_dim=16, intermediate_size=96, vocab_size=320))
    assert target < count_params(ModelShape.from_hf_config(model.model.config))  # the target, not the source

    callback = DynamicLoading(ref_losses={'scaling_law': str(csv_path)}, weights_file=str(tmp_path / 'run' / 'w.json'))
    logger = RecordingLogger()
    with caplog.at_level('INFO', logger='composer_plugins'):
        fitted = callback.fit_scaling_law(model, logger, DOMAINS)
    assert fitted.target_params == target and fitted.target_from == 'model.pruning.target'
    assert list(fitted.references) == DOMAINS  # the run's order; 'unused' is not fitted

    out = tmp_path / 'cli.yaml'
    assert main(['ref-loss', 'fit', str(csv_path), '--target-params', str(target), '--out', str(out)]) == 0
    cli_text = out.read_text()
    cli = yaml.safe_load(cli_text)['ref_losses']
    for domain in DOMAINS:
        fit = fitted.fits[domain]
        assert round(fitted.references[domain], 4) == cli[domain]
        assert f'{domain}: E={fit.E:.6g} A={fit.A:.6g} alpha={fit.alpha:.6g}' in cli_text
        assert fitted.references[domain] == pytest.approx(_law(target, *LAWS[domain]), abs=1e-4)

    assert logger.metrics == {f'data/ref_loss/{d}': fitted.references[d] for d in DOMAINS}
    assert logger.hyperparameters['data/ref_loss_target_params'] == target
    assert logger.hyperparameters['data/ref_loss_fit/beta/alpha'] == fitted.fits['beta'].alpha
    assert 'alpha: E=' in caplog.text and '-> ref' in caplog.text

    record = json.loads((tmp_path / 'run' / 'ref_losses.json').read_text())  # next to weights_file
    assert record['ref_losses'] == fitted.references and record['target_params'] == target
    assert record['target_from'] == 'model.pruning.target'
    assert record['fits']['small'] == {'E': fitted.fits['small'].E, 'A': fitted.fits['small'].A,
                                       'alpha': fitted.fits['small'].alpha, 'rmse': fitted.fits['small'].rmse}
    assert (callback.reference_losses(DOMAINS) == [fitted.references[d] for d in DOMAINS]).all()


def test_target_params_overrides_the_run_and_record_file_is_where_it_says(tmp_path):
    from composer_plugins.callbacks.dynamic_loading import DynamicLoading
    from composer_plugins.models.causal_lm import ShearCausalLM

    csv_path = _sizes_csv(tmp_path / 'sizes.csv')
    record = tmp_path / 'elsewhere' / 'refs.json'
    callback = DynamicLoading(ref_losses={'scaling_law': str(csv_path), 'target_params': '1.3M',
                                          'record_file': str(record)})
    fitted = callback.fit_scaling_law(ShearCausalLM('tiny-llama', pretrained=False), RecordingLogger(), DOMAINS)
    assert fitted.target_params == 1.3e6 and fitted.target_from == 'target_params'
    assert json.loads(record.read_text())['ref_losses'] == fitted.references
    # no pruner, no override: the model's own size (continued pre-training)
    plain = DynamicLoading(ref_losses={'scaling_law': str(csv_path)})
    model = ShearCausalLM('tiny-llama', pretrained=False)
    own = plain.fit_scaling_law(model, RecordingLogger(), DOMAINS)
    assert own.target_params == count_params(ModelShape.from_hf_config(model.model.config))
    assert own.target_from == 'model'


def test_a_non_finite_fit_is_one_error_naming_the_key_and_file(tmp_path):
    from composer_plugins.callbacks.dynamic_loading import DynamicLoading
    from composer_plugins.models.causal_lm import ShearCausalLM

    csv_path = tmp_path / 'huge.csv'
    csv_path.write_text('params,alpha,beta,small\n1M,1e308,2.0,1.0\n2M,1e307,1.9,0.9\n4M,1e306,1.8,0.8\n')
    callback = DynamicLoading(ref_losses={'scaling_law': str(csv_path)})  # parses: config load cannot know
    with pytest.raises(ShearError, match=re.escape(f"{KEY}.scaling_law: {csv_path}: domain 'alpha': the "
                                                   'scaling-law fit is not finite')):
        callback.fit_scaling_law(ShearCausalLM('tiny-llama', pretrained=False), RecordingLogger(), DOMAINS)


# --------------------------------------------------------------------------- config load


def test_the_scaling_law_form_loads_and_travels_to_the_callback(tmp_path, stub_data):
    from composer_plugins.config.foundry import to_foundry_config

    csv_path = _sizes_csv(tmp_path / 'sizes.csv')
    cfg = _load(_mixture_yaml(tmp_path, f'{{scaling_law: {csv_path}, target_params: 1.3B}}'), stub_data)
    refs = cfg.callbacks['dynamic_loading'].ref_losses
    assert refs == ScalingLawRefs(scaling_law=str(csv_path), target_params='1.3B')
    assert refs.target_param_count() == 1.3e9
    kwargs = to_foundry_config(cfg)['callbacks']['dynamic_loading']
    assert kwargs['ref_losses'] == {'scaling_law': str(csv_path), 'target_params': '1.3B'}
    assert from_dict(DynamicLoadingConfig, kwargs, 'callbacks.dynamic_loading') == cfg.callbacks['dynamic_loading']


GOOD_CSV = 'params,alpha,beta,small\n1M,2,2,2\n2M,1.9,1.9,1.9\n4M,1.8,1.8,1.8\n'


@pytest.mark.parametrize(('csv_text', 'ref_losses', 'expected'), [
    ('params,alpha,beta,small\n1M,2,2,2\n2M,1.9,1.9,1.9\n', None,
     f'{KEY}.scaling_law: {{csv}}: 2 model size(s); fitting E + A / N^alpha needs at least 3 rows'),
    ('params,alpha,beta,small\n1M,2,2,2\n1M,2,2,2\n2M,1.9,1.9,1.9\n', None,
     f'{KEY}.scaling_law: {{csv}}: 2 distinct model size(s); fitting E + A / N^alpha needs at least 3'),
    ('params,alpha,small\n1M,2,2\n2M,1.9,1.9\n4M,1.8,1.8\n', None,
     f"{KEY}.scaling_law: {{csv}}: no column for the run's domain(s) ['beta']; its domain columns are "
     "['alpha', 'small']"),
    ('params,alpha,beta,small\n1M,2,2,2\n2M,1.9,oops,1.9\n4M,1.8,1.8,1.8\n', None,
     f"{KEY}.scaling_law: {{csv}}: line 3, column 'beta': got 'oops'"),
    (None, None, f'{KEY}.scaling_law: {{csv}}: no such CSV file'),
    (GOOD_CSV, '{{scaling_law: {csv}, target_params: big}}',
     f"{KEY}.target_params: got 'big'; expected a positive number"),
    (GOOD_CSV, '{{scaling_law: {csv}, target_param: 1B}}',
     f"{KEY}.target_param: unknown key. Did you mean 'target_params'?"),
])
def test_bad_scaling_law_sources_are_one_error_at_config_load(tmp_path, stub_data, csv_text, ref_losses, expected):
    csv_path = tmp_path / 'sizes.csv'
    if csv_text is not None:
        csv_path.write_text(csv_text)
    yaml_path = _mixture_yaml(tmp_path, (ref_losses or '{{scaling_law: {csv}}}').format(csv=csv_path))
    with pytest.raises(ConfigError, match='^' + re.escape(expected.format(csv=csv_path))):
        _load(yaml_path, stub_data)


def test_config_load_checks_the_csv_without_torch(tmp_path, stub_data):
    """The CSV is read and checked at load (a missing domain fails in about a second); numpy, scipy and torch
    wait for fit start."""
    good = _mixture_yaml(tmp_path, f'{{scaling_law: {_sizes_csv(tmp_path / "sizes.csv")}}}', 'good.yaml')
    bad_csv = _sizes_csv(tmp_path / 'bad.csv', laws={d: LAWS[d] for d in ('alpha', 'small')})
    bad = _mixture_yaml(tmp_path, f'{{scaling_law: {bad_csv}}}', 'bad.yaml')
    script = textwrap.dedent(f'''
        import sys
        from composer_plugins.config.callback_args import ScalingLawRefs
        from composer_plugins.config.load import load_run_config
        from composer_plugins.errors import ConfigError
        overrides = ['variables.data_dir={stub_data}', 'save_folder=null']
        cfg = load_run_config({str(good)!r}, overrides)
        assert isinstance(cfg.callbacks['dynamic_loading'].ref_losses, ScalingLawRefs)
        try:
            load_run_config({str(bad)!r}, overrides)
        except ConfigError as err:
            print('error:', err)
        print(sorted(name for name in ('torch', 'numpy', 'scipy', 'composer') if name in sys.modules))
    ''')
    proc = subprocess.run([sys.executable, '-c', script], cwd=REPO_ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith(f"error: {KEY}.scaling_law: {bad_csv}: no column for the run's domain(s) ['beta']")
    assert lines[-1] == '[]', proc.stdout


# --------------------------------------------------------------------------- the LLaMA2 presets


def _uncommented_scaling_law(text: str) -> str:
    """A preset with its commented ``ref_losses: {scaling_law: ...}`` block in place of the paper's numbers."""
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith('    # ref_losses:'))
    block = [lines[start].replace('    # ', '    ', 1)]
    for line in lines[start + 1:]:
        if not line.startswith('    #   '):
            break
        block.append(line.replace('    #   ', '      ', 1))
    numbers = next(i for i, line in enumerate(lines) if line.startswith('    ref_losses: {cc:'))
    kept = [line for i, line in enumerate(lines) if i != numbers and not start <= i < start + len(block)]
    insert = numbers
    return ''.join(kept[:insert] + block + kept[insert:])


@pytest.mark.parametrize('name', ['llama2_7b_to_1.3b.yaml', 'llama2_7b_to_2.7b.yaml'])
def test_llama2_presets_scaling_law_form_gives_back_the_papers_references(name, tmp_path, monkeypatch):
    """The example CSV (labelled synthetic: the law through the paper's two published references) fitted at
    the preset's pruning target gives the preset's numeric references, and the alternative form loads."""
    from composer_plugins.data.scaling_law_refs import fit_references
    from composer_plugins.models.source_shape import resolve_source_shape

    monkeypatch.chdir(REPO_ROOT)  # the preset names the CSV relative to the checkout
    preset = REPO_ROOT / 'yamls' / 'presets' / name
    paper = yaml.safe_load(preset.read_text())['callbacks']['dynamic_loading']['ref_losses']
    data = tmp_path / 'data'
    for domain in paper:
        for split in ('train', 'eval'):
            (data / domain / split).mkdir(parents=True)
            (data / domain / split / 'index.json').write_text('{"version": 2, "shards": []}')
    variant = tmp_path / name
    variant.write_text(_uncommented_scaling_law(preset.read_text()))
    cfg = load_run_config(str(variant), [f'variables.data_dir={data}', f'variables.run_dir={tmp_path / "run"}'])
    refs = cfg.callbacks['dynamic_loading'].ref_losses
    assert isinstance(refs, ScalingLawRefs) and refs.record_file == str(tmp_path / 'run' / 'ref_losses.json')
    source, _ = resolve_source_shape(cfg.model.source)
    target = count_params(cfg.model.pruning.target.to_shape(source))
    assert target == {'llama2_7b_to_1.3b.yaml': 1_345_423_360, 'llama2_7b_to_2.7b.yaml': 2_701_560_320}[name]
    fitted = fit_references(refs.csv_path(), list(paper), target, 'model.pruning.target')
    for domain, value in paper.items():
        assert fitted.references[domain] == pytest.approx(value, abs=1e-4), domain


# --------------------------------------------------------------------------- a real run


def test_a_tiny_mixture_run_fits_logs_records_and_uses_the_references(mixture_dir, tmp_path):
    """yamls/mixture_tiny.yaml with the CSV form, one interval: the references are the model's own size's
    prediction, logged, written next to weights_file, and the doremi update used them."""
    import numpy as np
    from composer.loggers import InMemoryLogger

    from composer_plugins.callbacks.dynamic_loading import DynamicLoading
    from composer_plugins.data.scaling_law_refs import fit_references
    from composer_plugins.data.weight_rules import RULES
    from composer_plugins.train_entry import run

    csv_path = _sizes_csv(tmp_path / 'sizes.csv')
    run_dir = tmp_path / 'run'
    cfg = load_run_config(str(_mixture_yaml(tmp_path, f'{{scaling_law: {csv_path}}}')), [
        f'variables.data_dir={mixture_dir}', f'variables.run_dir={run_dir}', 'save_folder=null',
        'max_duration=10ba', 'loggers={inmemory: {}}', 'python_log_level=warning',
    ])
    trainer = run(cfg)
    try:
        memory = next(d for d in trainer.logger.destinations if isinstance(d, InMemoryLogger))
        callback = next(c for c in trainer.state.callbacks if isinstance(c, DynamicLoading))
        own = count_params(ModelShape.from_hf_config(trainer.state.model.model.config))
    finally:
        trainer.close()
    expected = fit_references(csv_path, DOMAINS, own, 'model', KEY)
    record = json.loads((run_dir / 'ref_losses.json').read_text())
    assert record['ref_losses'] == expected.references and record['target_from'] == 'model'
    assert record['target_params'] == own
    for domain in DOMAINS:
        assert memory.data[f'data/ref_loss/{domain}'][0][1] == expected.references[domain]
        assert memory.hyperparameters[f'data/ref_loss_fit/{domain}/E'] == expected.fits[domain].E
    (update,) = callback.history
    refs = np.array([expected.references[d] for d in DOMAINS])
    weights = RULES['doremi'](np.array([0.4, 0.4, 0.2]), np.array(update['losses']), refs, clamp_gap=True,
                              smoothing=0.0, floor=0.3)
    assert np.allclose(update['weights'], weights, rtol=0, atol=1e-12)
