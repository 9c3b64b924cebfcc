"""W&B (offline, switched on by one override) and the JSON-lines metrics file record our metric keys,
the ``wandb_visuals`` images and tables, and the keys ``shear wandb-dashboard``'s panels name.

One real tiny pruning run with dynamic loading and W&B offline (:func:`wandb_run`) serves every
test of this module but the last, which runs with W&B off.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from composer_plugins.loggers.jsonl_metrics import read_metrics
from composer_plugins.tools.dashboard.spec import SPEED_MONITOR, RunNames, build_spec, read_run_keys
from conftest import MIXTURE_YAML, run_train

PRUNING = ('model.pruning={target: {num_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, '
           'hidden_size: 48, intermediate_size: 96}}')
DENSE_MASKS = ('callbacks.mask_learning={init: dense}', 'callbacks.lagrangian={target_warmup: 10ba}')
TABLE_FILE = re.compile(r'^(?P<name>.+)_\d+_[0-9a-f]+\.table\.json$')  # W&B's media file name: key_step_hash
MEDIA_TYPE = '/_type'
REF_LOSS = 2.0  # yamls/mixture_tiny.yaml: callbacks.dynamic_loading.ref_losses, every domain


def _wandb_history(run_dir: Path) -> list[dict[str, Any]]:
    """The history rows of the offline run's ``.wandb`` file, values decoded from JSON."""
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal import datastore

    (run_file,) = run_dir.glob('wandb/offline-run-*/run-*.wandb')
    store = datastore.DataStore()
    store.open_for_scan(str(run_file))
    rows = []
    while (data := store.scan_data()) is not None:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        if record.WhichOneof('record_type') == 'history':
            row = {item.key or '/'.join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            # a media value (image, table) is flattened into <key>/_type, <key>/path ...: give it its key back
            for media in [key[:-len(MEDIA_TYPE)] for key in row if key.endswith(MEDIA_TYPE)]:
                row[media] = {key[len(media) + 1:]: value for key, value in row.items() if key.startswith(media + '/')}
            rows.append(row)
    return rows


def _wandb_history_keys(run_dir: Path) -> set[str]:
    return {key for row in _wandb_history(run_dir) for key in row}


@pytest.fixture(scope='module')
def wandb_run(mixture_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 batches of pruning with dynamic loading (evaluations and mask snapshots at 10 and 20), W&B offline,
    Composer's speed monitor on."""
    run_dir = tmp_path_factory.mktemp('wandb-run')
    run_train(
        f'variables.data_dir={mixture_dir}', f'variables.run_dir={run_dir}', 'save_folder=null', 'max_duration=20ba',
        'model.source=tiny-llama-gqa', PRUNING, *DENSE_MASKS, 'optimizer.name=adamw',
        f'callbacks.pruning_monitor={{masks_dir: {run_dir / "masks"}}}', 'callbacks.speed_monitor={window_size: 5}',
        'loggers.wandb.enabled=true',  # the one override that switches W&B on
        yaml=MIXTURE_YAML, WANDB_MODE='offline',
    )
    return run_dir


def test_offline_wandb_run_and_metrics_file_hold_our_keys(wandb_run):
    tmp_path = wandb_run
    expected = {'l0/expected_sparsity/hidden', 'l0/target_sparsity/layer', 'l0/lambda1/kv_group',
                'l0/expected_params', 'l0/mask_lr', 'loss/train/lagrangian', 'data/weight/small', 'data/samples/alpha',
                'eval/alpha/loss', 'eval/small/loss'}
    assert expected <= _wandb_history_keys(tmp_path)
    records = read_metrics(tmp_path / 'metrics.jsonl')
    logged = {key for record in records for key in record}
    assert expected <= logged
    weights = [r['data/weight/small'] for r in records if 'data/weight/small' in r]
    assert [r['batch'] for r in records if 'data/weight/small' in r] == [10, 20]
    assert len(weights) == 2


def test_offline_run_logs_the_heatmap_and_the_tables(wandb_run):
    """At each mask snapshot (batches 10, 20) the kept-units heatmap; at the end the shape and weights tables."""
    (files,) = wandb_run.glob('wandb/offline-run-*/files')
    history = _wandb_history(wandb_run)
    heatmaps = [row for row in history if 'masks/heatmap' in row]
    assert [(row['_step'], row['masks/heatmap']['_type']) for row in heatmaps] == [(10, 'images/separated'),
                                                                                  (20, 'images/separated')]
    tables_logged = [(row['_step'], key) for row in history for key in row if key.startswith('tables/')
                     and not key.endswith(MEDIA_TYPE) and isinstance(row[key], dict)]
    assert sorted(tables_logged) == [(20, 'tables/domain_weights'), (20, 'tables/model_shape')]
    pngs = sorted(files.glob('media/images/masks/heatmap_*.png'))
    assert len(pngs) == 2
    for png in pngs:
        with Image.open(png) as image:
            assert image.size[0] > 200 and image.size[1] > 100 and len(set(image.convert('L').getdata())) > 10

    tables = {TABLE_FILE.match(path.name)['name']: json.loads(path.read_text())
              for path in files.glob('media/table/tables/*.table.json')}
    shape, weights = tables['model_shape'], tables['domain_weights']
    assert shape['columns'] == ['model', 'layers', 'heads', 'kv heads', 'head dim', 'hidden', 'ffn', 'params']
    assert [row[:3] for row in shape['data']] == [['source', 2, 4], ['target (exported)', 1, 2]]
    assert [row[5:7] for row in shape['data']][1] == [48, 96]
    assert weights['columns'] == ['domain', 'final weight']
    assert [row[0] for row in weights['data']] == ['alpha', 'beta', 'small']
    records = read_metrics(wandb_run / 'metrics.jsonl')
    last = {key: value for record in records for key, value in record.items()}
    assert [row[1] for row in weights['data']] == pytest.approx(
        [last[f'data/weight/{d}'] for d in ('alpha', 'beta', 'small')])

    gaps = [row for row in history if 'eval/alpha/gap' in row]
    assert [row['_step'] for row in gaps] == [10, 20]
    losses = {r['batch']: r['eval/alpha/loss'] for r in records if 'eval/alpha/loss' in r}
    for row in gaps:
        assert row['eval/alpha/ref_loss'] == REF_LOSS
        assert row['eval/alpha/gap'] == pytest.approx(losses[row['_step']] - REF_LOSS, abs=1e-5)


def test_dashboard_panels_name_keys_the_run_logs(wandb_run):
    """The names (masks, domains) come from the run's metrics.jsonl; every non-optional panel key is in its
    W&B history, and so are the speed monitor's (on in this run); each regex panel matches a logged key."""
    logged = _wandb_history_keys(wandb_run)
    spec = build_spec('me', 'shear', names=RunNames.from_keys(read_run_keys(wandb_run)))
    assert [s.name for s in spec.sections] == ['L0', 'Loss', 'Data', 'Eval', 'System']
    assert all(spec.section(name).panels for name in ('L0', 'Loss', 'Data', 'Eval', 'System'))
    missing = sorted(spec.keys() - logged)
    assert not missing, missing
    speed = {key for panel in spec.panels() if panel.only_with == SPEED_MONITOR for key in panel.keys}
    assert speed and speed <= logged
    absent = {panel.only_with for panel in spec.panels() if panel.optional and not set(panel.keys) <= logged}
    assert absent == {'distillation', 'speed_monitor on a GPU with known peak flops'}
    generic = build_spec('me', 'shear')
    for panel in generic.panels():
        if panel.regex:
            assert any(re.fullmatch(panel.regex, key) for key in logged), panel
    assert {'l0/expected_sparsity/layer', 'l0/expected_sparsity/hidden'} <= generic.keys(optional=True) & logged


def test_wandb_is_off_by_default(mixture_dir, tmp_path):
    """With W&B off nothing is logged to it, and nothing is drawn for it (in this process: a child's start-up
    would add 10 s and check nothing more)."""
    from composer.loggers import WandBLogger

    from composer_plugins.config.load import load_run_config
    from composer_plugins.train_entry import run

    trainer = run(load_run_config(str(MIXTURE_YAML), [
        f'variables.data_dir={mixture_dir}', f'variables.run_dir={tmp_path}', 'save_folder=null', 'max_duration=10ba']))
    assert not list(tmp_path.glob('wandb/*run-*'))
    assert not any(isinstance(d, WandBLogger) for d in trainer.logger.destinations)
    assert 'WandbVisuals' not in {type(c).__name__ for c in trainer.state.callbacks}
    logged = {key for record in read_metrics(tmp_path / 'metrics.jsonl') for key in record}
    assert {'data/weight/alpha', 'eval/alpha/loss'} <= logged
    assert not {key for key in logged if key.endswith(('/gap', '/ref_loss')) or key.startswith(('masks/', 'tables/'))}
