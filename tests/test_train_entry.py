"""`train.py` end to end on CPU: learning, exact resume after SIGKILL, DDP and FSDP2."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from composer_plugins.config.load import load_run_config
from conftest import PRUNE_TINY_YAML, REPO_ROOT, TINY_YAML, run_train, subprocess_env, train_command


def _checkpoint_model(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location='cpu', weights_only=False)
    return state['state']['model']


def test_tiny_llama_loss_falls_in_30_steps(corpus_dir, tmp_path):
    from composer.loggers import InMemoryLogger

    from composer_plugins.train_entry import run

    cfg = load_run_config(str(TINY_YAML), [
        f'variables.data_dir={corpus_dir}', f'variables.run_dir={tmp_path}', 'max_duration=30ba',
        'eval_interval=30ba', 'save_folder=null', 'loggers={inmemory: {}}',
    ])
    trainer = run(cfg)
    logger = next(d for d in trainer.logger.destinations if isinstance(d, InMemoryLogger))
    losses = [value for _, value in logger.data['loss/train/total']]
    assert len(losses) == 30
    first, last = losses[0], sum(losses[-5:]) / 5
    assert first == pytest.approx(torch.log(torch.tensor(320.0)).item(), abs=0.3)  # uniform at init
    assert last < first - 1.5, losses
    eval_ce = trainer.state.eval_metrics['eval']['LanguageCrossEntropy'].compute().item()
    assert eval_ce < first - 1.5


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f'run ended ({proc.returncode}) before {path.name} appeared')
        if time.monotonic() > deadline:
            raise AssertionError(f'{path.name} did not appear in {timeout}s')
        time.sleep(0.02)


@pytest.mark.parametrize('yaml,distill', [  # default run: pruning's, which resumes plain's state and more
    pytest.param(TINY_YAML, False, marks=pytest.mark.slow), (PRUNE_TINY_YAML, False),
    pytest.param(TINY_YAML, True, marks=pytest.mark.slow)],
    ids=['plain', 'pruning', 'distillation'])
def test_sigkill_then_autoresume_matches_uninterrupted_run(corpus_dir, tmp_path, yaml, distill, request):
    """Weights (and, when pruning, log-alphas and multipliers) equal an uninterrupted run's."""
    total, kill_after = (30 if distill else 60), 10
    common = [f'variables.data_dir={corpus_dir}', f'variables.run_dir={tmp_path}', f'max_duration={total}ba',
              'save_interval=10ba', 'eval_interval=1000ba', 'autoresume=true', 'save_num_checkpoints_to_keep=-1']
    if distill:
        common.append(f'distillation={{teacher: {request.getfixturevalue("tiny_teacher_dir")}, alpha: 0.7}}')
    if yaml == PRUNE_TINY_YAML:  # two microbatches a batch: each draws its own gate noise, replayed on resume
        common.append('device_train_microbatch_size=4')

    run_train(*common, 'run_name=straight', f'save_folder={tmp_path / "straight"}', yaml=yaml)

    resumed_args = [*common, 'run_name=killed', f'save_folder={tmp_path / "killed"}']
    proc = subprocess.Popen(train_command(*resumed_args, yaml=yaml), cwd=REPO_ROOT, env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(tmp_path / 'killed' / f'ep0-ba{kill_after}-rank0.pt', proc, timeout=180)
        time.sleep(0.3)  # let it step past the checkpoint so the kill lands mid-training
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / 'killed' / f'ep0-ba{total}-rank0.pt').exists(), 'run finished before the kill'

    checkpoint_at_kill = tmp_path / 'killed' / f'ep0-ba{kill_after}-rank0.pt'
    mtime_at_kill = checkpoint_at_kill.stat().st_mtime
    resumed = run_train(*resumed_args, yaml=yaml)
    assert checkpoint_at_kill.stat().st_mtime == mtime_at_kill  # resumed, did not start over
    if yaml == PRUNE_TINY_YAML:  # the importance scores come from the checkpoint, not a new measurement
        log_text = resumed.stdout + resumed.stderr
        assert 'mask_learning: resumed' in log_text and 'init importance' not in log_text

    straight = _checkpoint_model(tmp_path / 'straight' / f'ep0-ba{total}-rank0.pt')
    killed = _checkpoint_model(tmp_path / 'killed' / f'ep0-ba{total}-rank0.pt')
    assert straight.keys() == killed.keys()
    if distill:  # the checkpoint names its teacher and holds none of its weights
        algorithms = dict(torch.load(tmp_path / 'killed' / f'ep0-ba{total}-rank0.pt', map_location='cpu',
                                     weights_only=False)['state']['algorithms'])
        assert algorithms['Distillation']['config']['teacher'] == str(request.getfixturevalue('tiny_teacher_dir'))
        assert all(name.startswith('model.') for name in straight)
    if yaml == PRUNE_TINY_YAML:
        assert any('log_alpha' in name for name in straight) and any('lambda_1' in name for name in straight)
    for name in straight:
        if isinstance(straight[name], torch.Tensor):
            assert torch.equal(straight[name], killed[name]), name
        else:  # the pruner's extra state (shapes, mask types)
            assert straight[name] == killed[name], name


@pytest.mark.parametrize('parallelism', [  # the slow suite (CI runs it too): 5 process launches, 100 s on 2 cores;
    # the default run keeps a 2-process FSDP2 pruning run and its export (tests/models/test_export_fsdp2.py)
    pytest.param(p, marks=pytest.mark.slow) for p in ('ddp', 'fsdp2', 'fsdp2-distillation')])
def test_two_process_run_checkpoints_and_resumes(corpus_dir, tmp_path, parallelism, request):
    save_folder = tmp_path / parallelism
    args = [f'variables.data_dir={corpus_dir}', 'eval_interval=4ba', 'save_interval=4ba', 'autoresume=true',
            f'run_name={parallelism}', f'save_folder={save_folder}']
    env = {}
    if parallelism == 'fsdp2-distillation':  # the teacher is sharded like the student
        args.append(f'distillation={{teacher: {request.getfixturevalue("tiny_teacher_dir")}, alpha: 0.5}}')
    if parallelism.startswith('fsdp2'):  # FSDP2 from the YAML alone: FSDP_VERSION unset
        args.append('fsdp_config={state_dict_type: sharded, mixed_precision: FULL}')
    started = run_train(*args, 'max_duration=4ba', nproc=2, unset=('FSDP_VERSION',), **env)
    wrapped = re.findall(r'parallelism: (.+)', started.stdout + started.stderr)
    # the module types of the model it trained, as each rank whose log the launcher shows reports them
    expected = 'FSDP2 (fully_shard) over 2 ranks' if parallelism.startswith('fsdp2') else 'DDP over 2 ranks'
    assert wrapped and {line.strip() for line in wrapped} == {expected}, wrapped
    if parallelism == 'fsdp2-distillation':
        log_text = started.stdout + started.stderr
        assert 'teacher sharded with FSDP2 over 2 ranks' in log_text and 'loss/train/kd' in log_text
    sharded = parallelism.startswith('fsdp2')
    first = save_folder / ('ep0-ba4' if sharded else 'ep0-ba4-rank0.pt')
    assert first.exists()
    first_mtime = first.stat().st_mtime

    run_train(*args, 'max_duration=8ba', nproc=2, **env)
    final = save_folder / ('ep0-ba8' if sharded else 'ep0-ba8-rank0.pt')
    assert final.exists()
    assert first.stat().st_mtime == first_mtime  # resumed from ba4, did not retrain it
    if parallelism == 'ddp':
        state = torch.load(final, map_location='cpu', weights_only=False)['state']
        assert state['timestamp']['Timestamp']['batch'] == 8
    if parallelism == 'fsdp2':  # the same sharded run continues on one process, from its newest checkpoint
        from composer_plugins.models.checkpoint import load_composer_state

        one = run_train(*args, 'max_duration=12ba', 'console_log_interval=1ba', nproc=1)
        batches = [int(b) for b in re.findall(r'\[batch=(\d+)/12\]', one.stdout + one.stderr)]
        assert batches[0] == 9 and batches[-1] == 12, batches
        consolidated = torch.load(save_folder / 'consolidated' / 'ep0-ba8-rank0.pt', map_location='cpu',
                                  weights_only=False)['state']
        sharded_state = load_composer_state(final)['state']
        for name, tensor in sharded_state['model'].items():
            assert torch.equal(consolidated['model'][name], tensor), name
        assert (save_folder / 'ep0-ba12-rank0.pt').exists()
