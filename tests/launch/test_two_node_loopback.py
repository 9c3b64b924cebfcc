"""Two composer launchers on one machine act as 2 nodes x 1 process: FSDP2 pruning (gloo on CPU)
with sharded checkpoints, autoresume of both "nodes", then the same run continued on another
world size (4 processes by autoresume; 1 process from a converted checkpoint).

What two launchers on one machine share that two real nodes do not, and how it is kept apart here:

* The working directory. llm-foundry 0.22's ``build_tokenizer`` creates a signal file
  ``._signal_file_node0_<random>`` in the working directory (the name is broadcast from rank 0,
  so it is the same on every node) and every node's local rank 0 deletes it afterwards: the
  second delete fails with ``FileNotFoundError`` (mosaicml/llm-foundry#1848; real nodes that
  share a working directory on a network filesystem hit it too). Each node runs in its own folder.
* ``/dev/shm``. mosaicml-streaming's local leader of every node (here: both processes) picks the
  first free shared-memory prefix between two barriers, so both pick the same one and the second
  ``SharedMemory(create=True)`` fails (``FileExistsError: '/000033_locals'`` here). Each node gets a
  private ``/dev/shm`` (a tmpfs in its own mount namespace, ``unshare --user --map-root-user
  --mount``); where namespaces are not allowed the tests are skipped.
* ``TMPDIR``: streaming's file locks live there, named by that prefix; one per node.
* CPU threads: train.py gives each process cores / ``LOCAL_WORLD_SIZE`` threads, and
  ``LOCAL_WORLD_SIZE`` is 1 for each launcher, hence ``OMP_NUM_THREADS=1``.
* The port of node 0's TCP store: a free one, chosen at run time.

One process cannot resume the sharded checkpoint directly: llm-foundry's ``train`` drops
``fsdp_config`` when the world size is 1 ("FSDP is not applicable for single-GPU training.
Reverting to DDP.") and Composer then reads the checkpoint folder as a ``.pt`` file
(``IsADirectoryError``). Converting the folder with ``torch.distributed.checkpoint.format_utils.
dcp_to_torch_save`` and passing the file as ``load_path`` works; both are tested below.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import PRUNE_TINY_YAML, REPO_ROOT, free_port, subprocess_env

pytestmark = pytest.mark.slow  # about 5 minutes on 2 CPU cores

TRAIN_PY = str(REPO_ROOT / 'train.py')
# The presets' fsdp_config, with mixed precision FULL as there (precision fp32: CPUs have no amp_bf16).
FSDP = ('fsdp_config={reshard_after_forward: true, mixed_precision: FULL, activation_checkpointing: true, '
        'activation_cpu_offload: false, state_dict_type: sharded}')
PRIVATE_SHM = ['unshare', '--user', '--map-root-user', '--mount', 'sh', '-c',
               'mount -t tmpfs tmpfs /dev/shm && exec "$@"', 'sh']
PHASE_TIMEOUT = 400


def _namespaces_allowed() -> bool:
    if shutil.which('unshare') is None:
        return False
    probe = subprocess.run([*PRIVATE_SHM, 'true'], capture_output=True, timeout=30)
    return probe.returncode == 0


def _overrides(corpus_dir: Path, run_dir: Path, phase: str, max_duration: str, *extra: str) -> list[str]:
    return [
        f'variables.data_dir={corpus_dir}', f'variables.run_dir={run_dir}', f'max_duration={max_duration}',
        'eval_interval=4ba', 'save_interval=4ba', 'save_num_checkpoints_to_keep=-1',
        f'loggers.jsonl.path={run_dir}/metrics-{phase}.jsonl', *extra,
    ]


def _log_tails(logs: list[Path]) -> str:
    return '\n'.join(f'--- {log} ---\n{log.read_text(errors="replace")[-6000:]}' for log in logs if log.exists())


def _run_processes(commands: list[tuple[list[str], Path, dict[str, str]]], logs: list[Path]) -> None:
    """Starts every ``(argv, cwd, env)`` at once; fails the test (killing the others) if one fails."""
    procs = []
    try:
        for (argv, cwd, env), log in zip(commands, logs):
            cwd.mkdir(parents=True, exist_ok=True)
            with open(log, 'w') as out:
                procs.append(subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                              start_new_session=True))
        deadline = time.monotonic() + PHASE_TIMEOUT
        while any(p.poll() is None for p in procs):
            if any(p.returncode not in (None, 0) for p in procs):
                pytest.fail(f'a process failed:\n{_log_tails(logs)}')
            if time.monotonic() > deadline:
                pytest.fail(f'timed out after {PHASE_TIMEOUT} s:\n{_log_tails(logs)}')
            time.sleep(0.5)
        if any(p.returncode != 0 for p in procs):
            pytest.fail(f'a process failed:\n{_log_tails(logs)}')
    finally:
        for proc in procs:  # only what this function started, by its own process group
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _run_two_nodes(root: Path, phase: str, overrides: list[str]) -> None:
    """``composer --world_size 2 --node_rank N ... -n 1 train.py`` for N = 0, 1, concurrently."""
    port = free_port()
    commands, logs = [], []
    for node in (0, 1):
        node_dir = root / f'node{node}'  # its own working directory and TMPDIR
        (node_dir / 'tmp').mkdir(parents=True, exist_ok=True)
        argv = [*PRIVATE_SHM, sys.executable, '-m', 'composer.cli.launcher', '--world_size', '2',
                '--node_rank', str(node), '--master_addr', '127.0.0.1', '--master_port', str(port), '-n', '1',
                TRAIN_PY, str(PRUNE_TINY_YAML), *overrides]
        env = subprocess_env(FSDP_VERSION='2', OMP_NUM_THREADS='1', TMPDIR=str(node_dir / 'tmp'))
        commands.append((argv, node_dir, env))
        logs.append(root / f'{phase}-node{node}.log')
    _run_processes(commands, logs)


def _checkpoint(path: Path, out: Path) -> dict:
    """A sharded checkpoint folder (or a ``.pt`` file) as one dict, read in this process."""
    if path.is_dir():
        from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
        dcp_to_torch_save(path, out)
        path = out
    return torch.load(path, map_location='cpu', weights_only=False)


def _metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _first_train_batch(records: list[dict]) -> int:
    return min(r['batch'] for r in records if 'loss/train/total' in r)


def _assert_pruning_state_came_back(checkpoint: Path, metrics: list[dict], batch: int) -> None:
    """The resumed run's first forward used the checkpoint's log_alphas and multipliers.

    Its logged Lagrangian (batch ``batch``) and expected sparsities (logged at batch end, as
    ``batch + 1``) equal what the pruner rebuilt from ``checkpoint`` computes at that step;
    a pruner restarted from its initial state would give 0 and the initial sparsities.
    """
    from composer_plugins.models.checkpoint import load_pruning_checkpoint

    _, pruner, _, _ = load_pruning_checkpoint(checkpoint)
    pruner.train()
    with torch.no_grad():
        out = pruner(batch)
    # the multipliers have moved away from their initial 0 (the Lagrangian itself can be ~0: with importance
    # init and no target warm-up the expected sparsity sits on its target)
    multipliers = [*pruner.lagrangian.lambda_1.values(), *pruner.lagrangian.lambda_2.values()]
    assert max(float(m.abs().max()) for m in multipliers) > 1e-4
    lagrangian = [r['loss/train/lagrangian'] for r in metrics if r['batch'] == batch and 'loss/train/lagrangian' in r]
    sparsity = [r for r in metrics if r['batch'] == batch + 1 and 'l0/expected_params' in r]
    assert len(lagrangian) == 1 and len(sparsity) == 1
    assert lagrangian[0] == pytest.approx(float(out.lagrangian), rel=1e-4, abs=1e-6)
    for name, value in out.expected_sparsity.items():
        assert sparsity[0][f'l0/expected_sparsity/{name}'] == pytest.approx(float(value), rel=1e-5, abs=1e-7), name


def _pruner_optimizer_steps(state: dict) -> set[int]:
    """The Adam steps of the log-alphas and the multipliers: their optimizers are the mask callbacks' own."""
    from composer_plugins.callbacks.pruning_params import unpacked

    steps = set()
    for callback in ('MaskLearning', 'LagrangianAscent'):
        optimizer = unpacked(state['callbacks'][callback])['optimizer']
        steps |= {int(entry['step']) for entry in optimizer['params'].values()}
    return steps


@pytest.fixture(scope='module')
def two_node_run(tmp_path_factory, corpus_dir):
    """Phase 1: both nodes train 4 batches; phase 2: both restart with max_duration=8ba."""
    if not _namespaces_allowed():
        pytest.skip('needs `unshare --user --mount` (a private /dev/shm per simulated node)')
    root = tmp_path_factory.mktemp('two-node')
    run_dir, save_folder = root / 'run', root / 'run' / 'checkpoints'
    common = ['run_name=loopback', f'save_folder={save_folder}', 'autoresume=true', FSDP]

    _run_two_nodes(root, 'first', _overrides(corpus_dir, run_dir, 'first', '4ba', *common))
    first = save_folder / 'ep0-ba4'
    first_files = {p.name: p.stat().st_mtime_ns for p in first.iterdir()}

    _run_two_nodes(root, 'resumed', _overrides(corpus_dir, run_dir, 'resumed', '8ba', *common))
    return {'root': root, 'run_dir': run_dir, 'save_folder': save_folder, 'common': common,
            'first_files': first_files, 'corpus_dir': corpus_dir}


def test_two_launchers_save_sharded_checkpoints_and_autoresume(two_node_run):
    save_folder, root = two_node_run['save_folder'], two_node_run['root']
    first, final = save_folder / 'ep0-ba4', save_folder / 'ep0-ba8'
    # one shard per rank, written by the two "nodes" into the shared folder
    assert set(two_node_run['first_files']) == {'.metadata', '__0_0.distcp', '__1_0.distcp'}
    # the restart resumed from ba4: it neither rewrote nor retrained it
    assert {p.name: p.stat().st_mtime_ns for p in first.iterdir()} == two_node_run['first_files']
    assert os.readlink(save_folder / 'latest-sharded-rank0') == 'ep0-ba8'
    resumed = _metrics(two_node_run['run_dir'] / 'metrics-resumed.jsonl')
    assert _first_train_batch(resumed) == 4
    _assert_pruning_state_came_back(first, resumed, 4)

    state = _checkpoint(final, root / 'ba8.pt')['state']
    assert state['timestamp']['Timestamp']['batch'] == 8
    assert state['metadata']['world_size'] == 2
    assert _pruner_optimizer_steps(state) == {8}  # Adam state of log_alphas and multipliers: 4 + 4 steps


def test_resume_on_four_processes_reshards_the_checkpoint(two_node_run):
    """Autoresume of the 2-rank checkpoint with ``composer -n 4``: FSDP2 reshards it on load."""
    root, run_dir, save_folder = two_node_run['root'], two_node_run['run_dir'], two_node_run['save_folder']
    overrides = _overrides(two_node_run['corpus_dir'], run_dir, 'four', '12ba', *two_node_run['common'])
    argv = [sys.executable, '-m', 'composer.cli.launcher', '-n', '4', TRAIN_PY, str(PRUNE_TINY_YAML), *overrides]
    env = subprocess_env(FSDP_VERSION='2', OMP_NUM_THREADS='1')
    _run_processes([(argv, REPO_ROOT, env)], [root / 'four.log'])

    final = save_folder / 'ep0-ba12'
    assert {p.name for p in final.iterdir()} == {'.metadata', *(f'__{rank}_0.distcp' for rank in range(4))}
    metrics = _metrics(run_dir / 'metrics-four.jsonl')
    assert _first_train_batch(metrics) == 8
    _assert_pruning_state_came_back(save_folder / 'ep0-ba8', metrics, 8)
    state = _checkpoint(final, root / 'ba12.pt')['state']
    assert state['timestamp']['Timestamp']['batch'] == 12
    assert state['metadata']['world_size'] == 4
    assert _pruner_optimizer_steps(state) == {12}

    from transformers import AutoConfig

    from composer_plugins.cli.main import main as shear_main
    assert shear_main(['export', str(final), '--out', str(root / 'exported')]) == 0
    config = AutoConfig.from_pretrained(root / 'exported')
    assert (config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads,
            config.hidden_size, config.intermediate_size) == (2, 2, 1, 48, 96)


def test_one_process_continues_from_the_sharded_checkpoint(two_node_run):
    """load_path names the sharded folder: the one-process run consolidates it once and continues from it
    (weights, optimizer, pruner, timestamp, data loader position)."""
    root, corpus_dir = two_node_run['root'], two_node_run['corpus_dir']
    sharded = two_node_run['save_folder'] / 'ep0-ba8'
    run_dir = root / 'one'
    env = subprocess_env(FSDP_VERSION='2')
    _run_processes(
        [([sys.executable, TRAIN_PY, str(PRUNE_TINY_YAML),
           *_overrides(corpus_dir, run_dir, 'one', '12ba', 'run_name=one', FSDP, f'load_path={sharded}',
                       f'save_folder={run_dir}/checkpoints')], REPO_ROOT, env)],
        [root / 'one.log'],
    )
    assert (run_dir / 'checkpoints' / 'consolidated' / 'ep0-ba8-rank0.pt').is_file()
    metrics = _metrics(run_dir / 'metrics-one.jsonl')
    assert _first_train_batch(metrics) == 8
    _assert_pruning_state_came_back(sharded, metrics, 8)
    state = _checkpoint(run_dir / 'checkpoints' / 'ep0-ba12-rank0.pt', root / 'unused.pt')['state']
    assert state['timestamp']['Timestamp']['batch'] == 12
    assert _pruner_optimizer_steps(state) == {12}
