"""W&B (offline, switched on by one override) and the JSON-lines metrics file record our metric keys."""
from __future__ import annotations

from pathlib import Path

from composer_plugins.loggers.jsonl_metrics import read_metrics
from conftest import MIXTURE_YAML, run_train

PRUNING = ('model.pruning={target: {num_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, '
           'hidden_size: 48, intermediate_size: 96}}')
DENSE_MASKS = ('callbacks.mask_learning={init: dense}', 'callbacks.lagrangian={target_warmup: 10ba}')


def _wandb_history_keys(run_dir: Path) -> set[str]:
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal import datastore

    (run_file,) = run_dir.glob('wandb/offline-run-*/run-*.wandb')
    store = datastore.DataStore()
    store.open_for_scan(str(run_file))
    keys: set[str] = set()
    while (data := store.scan_data()) is not None:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        if record.WhichOneof('record_type') == 'history':
            keys |= {item.key or '/'.join(item.nested_key) for item in record.history.item}
    return keys


def test_offline_wandb_run_and_metrics_file_hold_our_keys(mixture_dir, tmp_path):
    run_train(
        f'variables.data_dir={mixture_dir}', f'variables.run_dir={tmp_path}', 'save_folder=null', 'max_duration=20ba',
        'model.source=tiny-llama-gqa', PRUNING, *DENSE_MASKS, 'optimizer.name=adamw',
        f'callbacks.pruning_monitor={{masks_dir: {tmp_path / "masks"}}}',
        'loggers.wandb.enabled=true',  # the one override that switches W&B on
        yaml=MIXTURE_YAML, WANDB_MODE='offline',
    )
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


def test_wandb_is_off_by_default(mixture_dir, tmp_path):
    run_train(f'variables.data_dir={mixture_dir}', f'variables.run_dir={tmp_path}', 'save_folder=null',
              'max_duration=10ba', yaml=MIXTURE_YAML)
    assert not list(tmp_path.glob('wandb/*run-*'))
    assert (tmp_path / 'metrics.jsonl').exists()
