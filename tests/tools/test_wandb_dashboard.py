"""`shear wandb-dashboard` offline: the spec's sections and panels, W&B's own view of it, the layout picture.

That its panels name keys a real run logs is checked on a real offline W&B run in
``tests/loggers/test_run_loggers.py``.
"""
from __future__ import annotations

import json
import re

import pytest
import yaml
from PIL import Image

from composer_plugins.cli import main as cli_main
from composer_plugins.errors import ShearError
from composer_plugins.tools.dashboard.layout_png import render_layout
from composer_plugins.tools.dashboard.spec import ALL_MASK_TYPES, SECTION_NAMES, RunNames, build_spec, read_run_keys
from composer_plugins.tools.dashboard.workspace import view_dict, wandb_is_offline

KEYS = {'l0/expected_sparsity/layer', 'l0/expected_sparsity/hidden', 'data/weight/beta', 'data/weight/alpha',
        'data/weight_entropy', 'eval/alpha/loss', 'eval/beta/loss', 'loss/train/total'}


def test_run_names_come_from_the_keys():
    names = RunNames.from_keys(KEYS)
    assert names == RunNames(masks=('layer', 'hidden'), domains=('alpha', 'beta'))


def test_spec_has_every_section_and_marks_the_optional_panels():
    spec = build_spec('me', 'shear', names=RunNames(masks=('layer', 'kv_group'), domains=('alpha', 'beta')))
    assert tuple(s.name for s in spec.sections) == SECTION_NAMES
    l0 = [p.title for p in spec.section('L0').panels]
    assert l0[:2] == ['layer: expected vs target sparsity', 'kv_group: expected vs target sparsity']
    assert {'l0/lambda1/kv_group', 'l0/lambda2/layer', 'l0/expected_params', 'masks/heatmap',
            'tables/model_shape'} <= spec.keys()
    (weights,) = [p for p in spec.section('Data').panels if p.title == 'Domain weights']
    assert weights.kind == 'stacked_area' and weights.keys == ('data/weight/alpha', 'data/weight/beta')
    assert {'eval/alpha/loss', 'eval/alpha/ref_loss', 'eval/alpha/gap'} <= spec.keys()
    # only distillation runs log loss/train/kd, only a GPU run with known flops logs MFU
    assert 'loss/train/kd' not in spec.keys() and 'loss/train/kd' in spec.keys(optional=True)
    assert {p.only_with for p in spec.panels() if 'throughput/device/mfu' in p.keys} == {
        'speed_monitor on a GPU with known peak flops'}
    assert all(p.optional for p in spec.section('System').panels)


def test_without_run_names_masks_are_optional_and_domains_are_regexes():
    spec = build_spec('me', 'shear')
    per_mask = [p for p in spec.section('L0').panels if p.title.endswith('expected vs target sparsity')]
    assert len(per_mask) == len(ALL_MASK_TYPES) and all(p.optional for p in per_mask)
    regexes = {p.title: p.regex for p in spec.panels() if p.regex}
    assert re.fullmatch(regexes['Domain weights'], 'data/weight/code')
    assert not re.fullmatch(regexes['Domain weights'], 'data/weight_entropy')
    assert re.fullmatch(regexes['Gap to the reference loss'], 'eval/code/gap')


def test_wandb_workspaces_builds_the_view_offline():
    """W&B's own serialisation (what ``Workspace.save`` uploads), with the pinned wandb."""
    spec = build_spec('me', 'shear', names=RunNames(masks=('layer',), domains=('alpha',)))
    view = view_dict(spec)
    assert (view['entity'], view['project'], view['displayName']) == ('me', 'shear', spec.name)
    sections = view['spec']['section']['panelBankConfig']['sections']
    assert [s['name'] for s in sections] == list(SECTION_NAMES)
    panels = {s['name']: s['panels'] for s in sections}
    types = [p['viewType'] for p in panels['L0']]
    assert types.count('Media Browser') == 1 and types.count('Weave') == 1  # heatmap, shape table
    data_lines = [p['config'] for p in panels['Data'] if p['viewType'] == 'Run History Line Plot']
    assert data_lines[0]['plotType'] == 'stacked-area' and data_lines[0]['metrics'] == ['data/weight/alpha']
    layouts = [(p['layout']['x'], p['layout']['y']) for p in panels['L0']]
    assert layouts[:4] == [(0, 0), (8, 0), (16, 0), (0, 6)]


@pytest.mark.parametrize('suffix', ['.json', '.yaml'])
def test_cli_writes_the_spec_when_offline(tmp_path, monkeypatch, capsys, suffix):
    monkeypatch.setenv('WANDB_MODE', 'offline')
    assert wandb_is_offline()
    (tmp_path / 'run').mkdir()
    (tmp_path / 'run' / 'metrics.jsonl').write_text(
        json.dumps({'batch': 1, **{key: 1.0 for key in KEYS}}) + '\n', encoding='utf-8')
    out, png = tmp_path / f'spec{suffix}', tmp_path / 'layout.png'
    assert cli_main.main(['wandb-dashboard', '--entity', 'me', '--project', 'shear', '--run-dir',
                          str(tmp_path / 'run'), '--out', str(out), '--layout-png', str(png)]) == 0
    data = (json.loads if suffix == '.json' else yaml.safe_load)(out.read_text(encoding='utf-8'))
    assert [s['name'] for s in data['spec']['sections']] == list(SECTION_NAMES)
    assert data['wandb_view']['project'] == 'shear'
    panel = data['spec']['sections'][1]['panels'][2]
    assert (panel['title'], panel['optional'], panel['only_with']) == ('Distillation: KD and LM', True, 'distillation')
    with Image.open(png) as image:
        assert image.size[0] > 600 and image.size[1] > 600
    assert f'Wrote {out}' in capsys.readouterr().out


def test_cli_offline_without_out_writes_the_default_file(tmp_path, monkeypatch):
    monkeypatch.setenv('WANDB_MODE', 'disabled')
    monkeypatch.chdir(tmp_path)
    assert cli_main.main(['wandb-dashboard', '--entity', 'me', '--project', 'shear']) == 0
    assert json.loads((tmp_path / 'wandb_dashboard.json').read_text())['spec']['entity'] == 'me'


def test_no_api_key_is_offline(tmp_path, monkeypatch):
    monkeypatch.delenv('WANDB_MODE', raising=False)
    monkeypatch.delenv('WANDB_API_KEY', raising=False)
    monkeypatch.setenv('NETRC', str(tmp_path / 'no-netrc'))
    monkeypatch.setenv('HOME', str(tmp_path))
    assert wandb_is_offline()
    monkeypatch.setenv('WANDB_API_KEY', 'x' * 40)
    assert not wandb_is_offline()


def test_missing_metrics_file_names_it(tmp_path):
    with pytest.raises(ShearError, match=re.escape(str(tmp_path / 'metrics.jsonl'))):
        read_run_keys(tmp_path)


def test_layout_picture_draws_every_panel(tmp_path):
    path = render_layout(build_spec('me', 'shear'), tmp_path / 'layout.png')
    with Image.open(path) as image:
        assert image.mode in ('RGBA', 'RGB') and image.size[1] > image.size[0]
