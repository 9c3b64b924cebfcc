"""Bad configs fail fast with one readable message naming the key."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from composer_plugins.config.load import load_run_config
from composer_plugins.errors import ConfigError
from conftest import REPO_ROOT, TINY_YAML, subprocess_env


def _load(corpus_dir: Path, *overrides: str):
    return load_run_config(str(TINY_YAML), [f'variables.data_dir={corpus_dir}', *overrides])


def test_valid_tiny_yaml_loads(corpus_dir):
    cfg = _load(corpus_dir)
    assert cfg.model.source == 'tiny-llama'
    assert cfg.train_loader.dataset.local == str(corpus_dir)
    assert cfg.optimizer.lr == pytest.approx(3e-3)


@pytest.mark.parametrize(('override', 'expected'), [
    ('max_duraton=10ba', "max_duraton: unknown key. Did you mean 'max_duration'?"),
    ('model.sourse=tiny-llama', "model.sourse: unknown key. Did you mean 'source'?"),
    ('train_loader.dataset.shufle=true', "train_loader.dataset.shufle: unknown key. Did you mean 'shuffle'?"),
])
def test_unknown_key_is_named_with_suggestion_and_expected_keys(corpus_dir, override, expected):
    with pytest.raises(ConfigError) as info:
        _load(corpus_dir, override)
    message = str(info.value)
    assert message.startswith(expected)
    assert 'Expected one of:' in message


@pytest.mark.parametrize(('override', 'expected'), [
    ('global_train_batch_size=eight', "global_train_batch_size: got 'eight' (str); expected int"),
    ('optimizer.lr=fast', "optimizer.lr: got 'fast' (str); expected float"),
    ('precision=fp8', "precision: got 'fp8'; expected one of 'fp32', 'amp_bf16', 'amp_fp16'"),
    ('train_loader.name=txt', "train_loader.name: got 'txt'; expected one of 'text'"),
    ('model.source=/no/such/model', "model.source: model directory '/no/such/model' does not exist"),
])
def test_wrong_values_are_named(corpus_dir, override, expected):
    with pytest.raises(ConfigError, match='^' + __import__('re').escape(expected)):
        _load(corpus_dir, override)


def test_missing_shards_are_named(tmp_path):
    with pytest.raises(ConfigError, match='train_loader.dataset.local: no MDS index at'):
        load_run_config(str(TINY_YAML), [f'variables.data_dir={tmp_path}'])


def test_missing_required_key(tmp_path, corpus_dir):
    data = yaml.safe_load(TINY_YAML.read_text())
    del data['max_seq_len']
    path = tmp_path / 'run.yaml'
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match='^max_seq_len: required key is missing'):
        load_run_config(str(path), [f'variables.data_dir={corpus_dir}'])


def test_bad_config_fails_fast_with_one_message(corpus_dir):
    """Through the real entry point: exit code 2, one error line, well under 10 s."""
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / 'train.py'), str(TINY_YAML), f'variables.data_dir={corpus_dir}',
         'optimizer.lrr=1.0'],
        cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=60,
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 2
    error_lines = [line for line in proc.stderr.splitlines() if 'ERROR' in line]
    assert len(error_lines) == 1, proc.stderr
    assert "optimizer.lrr: not an argument of decoupled_adamw. Did you mean 'lr'?" in error_lines[0]
    assert 'Traceback' not in proc.stderr
    assert elapsed < 10, f'took {elapsed:.1f}s'


# --- fsdp_config: the FSDP2 keys only ------------------------------------------------

PRUNE_TINY_YAML = REPO_ROOT / 'yamls' / 'prune_tiny.yaml'


@pytest.mark.parametrize(('override', 'expected'), [
    ('fsdp_config.activation_checkpointng=true',
     "fsdp_config.activation_checkpointng: unknown key. Did you mean 'activation_checkpointing'?"),
    # FSDP1 keys: composer's FSDP2 would drop them with a warning, doing something else than asked
    ('fsdp_config.sharding_strategy=SHARD_GRAD_OP', 'fsdp_config.sharding_strategy: not supported here: an FSDP1 key'),
    ('fsdp_config.activation_checkpointing_reentrant=false',
     'fsdp_config.activation_checkpointing_reentrant: not supported here: an FSDP1 key'),
    ('fsdp_config.mixed_precision=BF16', "fsdp_config.mixed_precision: got 'BF16'; expected one of 'DEFAULT'"),
    ('fsdp_config.state_dict_type=local',
     "fsdp_config.state_dict_type: got 'local'; expected one of 'sharded', 'full'"),
    ('fsdp_config.reshard_after_forward=0', 'fsdp_config.reshard_after_forward: got 0; expected true, false'),
    ('fsdp_config.load_monolith_rank0_only=true', 'fsdp_config.load_monolith_rank0_only: needs state_dict_type: full'),
])
def test_fsdp_config_errors_name_the_key(corpus_dir, override, expected):
    with pytest.raises(ConfigError) as info:
        _load(corpus_dir, override)
    assert str(info.value).startswith(expected)


def test_fsdp_config_typo_fails_fast_through_train_py(corpus_dir):
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / 'train.py'), str(TINY_YAML), f'variables.data_dir={corpus_dir}',
         'fsdp_config={state_dict_type: sharded, activation_checkpointng: true}'],
        cwd=REPO_ROOT, env=subprocess_env(FSDP_VERSION='2'), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    error_lines = [line for line in proc.stderr.splitlines() if 'ERROR' in line]
    assert len(error_lines) == 1, proc.stderr
    expected = "fsdp_config.activation_checkpointng: unknown key. Did you mean 'activation_checkpointing'?"
    assert expected in error_lines[0]


def test_fsdp_config_reaches_llm_foundry_as_fsdp2_keys(corpus_dir):
    from composer_plugins.config.foundry import to_foundry_config
    cfg = _load(corpus_dir, 'fsdp_config={mixed_precision: {param_dtype: bf16, reduce_dtype: fp32}, '
                            'activation_checkpointing: true}')
    # state_dict_type is written out: llm-foundry reads a missing one as 'full' when naming the
    # latest-checkpoint pointer, while FSDP2 saves sharded by default
    assert to_foundry_config(cfg)['fsdp_config'] == {
        'state_dict_type': 'sharded', 'activation_checkpointing': True,
        'mixed_precision': {'param_dtype': 'bf16', 'reduce_dtype': 'fp32'}}


def test_fsdp_config_schema_only_has_keys_composer_fsdp2_sets():
    import dataclasses

    from composer.utils.parallelism import FSDP2Config

    from composer_plugins.config.schema import FsdpConfig
    assert {f.name for f in dataclasses.fields(FsdpConfig)} == FSDP2Config.settable_attrs() - {'device_mesh'}


@pytest.mark.parametrize(('overrides', 'error'), [
    (['precision=amp_bf16', 'fsdp_config={mixed_precision: DEFAULT}'], True),
    (['precision=amp_bf16', 'fsdp_config={mixed_precision: PURE}'], True),
    (['precision=amp_bf16', 'fsdp_config={state_dict_type: sharded}'], True),  # null is Composer's DEFAULT
    (['fsdp_config={mixed_precision: {param_dtype: bf16}}'], True),
    (['precision=amp_bf16', 'fsdp_config={mixed_precision: FULL}'], False),
    (['precision=amp_bf16', 'fsdp_config={mixed_precision: {reduce_dtype: bf16}}'], False),
    (['fsdp_config={mixed_precision: DEFAULT}'], False),  # fp32 precision: DEFAULT keeps fp32 parameters
    (['precision=amp_bf16'], False),                        # DDP: parameters stay fp32 under autocast
])
def test_pruning_rejects_fsdp2_low_precision_parameters(corpus_dir, overrides, error):
    """FSDP2 applies one mixed-precision policy to every unit, the pruner included: bf16 gates
    and multipliers would make the masks written at evaluation differ from the exported ones."""
    args = [f'variables.data_dir={corpus_dir}', *overrides]
    if error:
        with pytest.raises(ConfigError, match="^fsdp_config.mixed_precision: got .* Use 'FULL'"):
            load_run_config(str(PRUNE_TINY_YAML), args)
    else:
        load_run_config(str(PRUNE_TINY_YAML), args)
    load_run_config(str(TINY_YAML), args)  # without model.pruning every setting is fine


@pytest.mark.parametrize(('override', 'expected'), [
    ('optimizer.lr=.nan', 'optimizer.lr: got nan; expected a finite number'),
    ('optimizer.lr=-.inf', 'optimizer.lr: got -inf; expected a finite number'),
    ('optimizer.betas=[0.9,.inf]', 'optimizer.betas[1]: got inf; expected a finite number'),
    ('distillation={teacher: tiny-llama, temperature: .nan}', 'distillation.temperature: got nan'),
])
def test_non_finite_numbers_are_named_errors(corpus_dir, override, expected):
    with pytest.raises(ConfigError) as info:
        _load(corpus_dir, override)
    assert str(info.value).startswith(expected)


def test_save_folder_that_cannot_be_created_is_one_line(corpus_dir, tmp_path):
    blocker = tmp_path / 'a-file'
    blocker.write_text('not a folder')
    expected = r"^save_folder: '.*a-file/checkpoints' cannot be created: '.*a-file' is a file"
    with pytest.raises(ConfigError, match=expected):
        _load(corpus_dir, f'save_folder={blocker}/checkpoints')


def _train_cli(yaml_path: Path, *overrides: str) -> tuple[int, float, list[str]]:
    """``python train.py YAML ...`` in a subprocess: its exit code, wall seconds and non-blank output lines."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(REPO_ROOT / 'train.py'), str(yaml_path), *overrides], cwd=REPO_ROOT,
                          env=subprocess_env(), capture_output=True, text=True, timeout=120)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    return proc.returncode, time.monotonic() - started, lines


def _folder_with_checkpoint(tmp_path: Path, name: str, content: bytes = b'') -> Path:
    """``tmp_path/checkpoints`` holding one (fake) Composer checkpoint file called ``name``."""
    folder = tmp_path / 'checkpoints'
    folder.mkdir()
    (folder / name).write_bytes(content)
    return folder


def test_save_folder_with_checkpoints_needs_autoresume_or_overwrite(corpus_dir, tmp_path):
    folder = _folder_with_checkpoint(tmp_path, 'ep0-ba2-rank0.pt')
    with pytest.raises(ConfigError, match=r"^save_folder: '.*' already holds checkpoints \(ep0-ba2-rank0.pt\); "
                                          r'set autoresume=true .* save_overwrite=true'):
        _load(corpus_dir, f'save_folder={folder}')
    for flag in ('autoresume=true', 'save_overwrite=true'):
        assert _load(corpus_dir, f'save_folder={folder}', flag).save_folder == str(folder)


def test_missing_load_path_is_named(corpus_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"^load_path: '.*nope.pt' does not exist"):
        _load(corpus_dir, f'load_path={tmp_path / "nope.pt"}')


def test_rerun_into_a_finished_run_folder_fails_in_seconds_with_one_line(corpus_dir, tmp_path):
    """The CLI path: a second run into the same folder is one line, rc 2, and the checkpoint stays."""
    folder = _folder_with_checkpoint(tmp_path, 'ep0-ba20-rank0.pt', b'kept')
    returncode, elapsed, lines = _train_cli(TINY_YAML, f'variables.data_dir={corpus_dir}', f'save_folder={folder}')
    assert returncode == 2 and elapsed < 30
    assert len(lines) == 1 and 'already holds checkpoints' in lines[0], lines
    assert (folder / 'ep0-ba20-rank0.pt').read_bytes() == b'kept'


def test_target_larger_than_the_source_fails_in_seconds_before_the_model_is_built(corpus_dir):
    returncode, elapsed, lines = _train_cli(PRUNE_TINY_YAML, f'variables.data_dir={corpus_dir}',
                                            'model.pruning.target.num_layers=99')
    assert returncode == 2 and len(lines) == 1, lines
    assert 'model.pruning.target: target shape: num_layers (99) exceeds the source num_layers' in lines[0]
    assert 'model shape' not in lines[0]
    assert elapsed < 5.0, f'{elapsed:.1f} s'
