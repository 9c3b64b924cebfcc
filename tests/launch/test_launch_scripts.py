"""launch/: the command every script prints with --dry-run (parsed back with shlex and with
the launchers' own argument parsers), one-line errors, and one real 2-process torchrun job."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT, free_port, subprocess_env

LAUNCH = REPO_ROOT / 'launch'
SCRIPTS = ['single_node.sh', 'multi_node_composer.sh', 'multi_node_torchrun.sh', 'slurm.sbatch', 'pytorchjob.sh']
TRAIN_PY = str(REPO_ROOT / 'train.py')
YAML_ARG = 'yamls/tiny.yaml'  # relative, as typed in the repo root: must arrive as given
# Spaces, braces, quotes and a '$': each must reach train.py unchanged.
OVERRIDES = ['max_duration=2ba', 'fsdp_config={state_dict_type: sharded}', "run_name=it's a test", 'x=${variables.a}']
# Variables the scripts read: the tests set them explicitly, never inherit them.
CONTROLLED = {'NPROC', 'NNODES', 'NODE_RANK', 'MASTER_ADDR', 'MASTER_PORT', 'CUDA_VISIBLE_DEVICES', 'FSDP_VERSION',
              'OMP_NUM_THREADS', 'TOKENIZERS_PARALLELISM', 'DRY_RUN', 'COMPOSER_BIN', 'TORCHRUN_BIN', 'IMAGE',
              'JOB_NAME', 'NAMESPACE', 'KUBECTL', 'REPO_ROOT', 'WORLD_SIZE', 'RANK', 'LOCAL_WORLD_SIZE'}
CORES = len(os.sched_getaffinity(0))


def _env(fake_bin: Path | None = None, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in subprocess_env().items() if k not in CONTROLLED and not k.startswith('SLURM_')}
    path = [str(Path(sys.executable).parent), env.get('PATH', '/usr/bin:/bin')]
    env['PATH'] = os.pathsep.join([str(fake_bin), *path] if fake_bin else path)
    env.update(settings)
    return env


def _run(script: str, *args: str, fake_bin: Path | None = None, **settings: str) -> subprocess.CompletedProcess:
    return subprocess.run(['bash', str(LAUNCH / script), *args], cwd=REPO_ROOT, env=_env(fake_bin, **settings),
                          capture_output=True, text=True, timeout=120)


def _dry_run(script: str, *args: str, fake_bin: Path | None = None, **settings: str) -> list[str]:
    proc = _run(script, '--dry-run', *args, fake_bin=fake_bin, **settings)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ''
    return proc.stdout.splitlines()


def _parse(line: str) -> tuple[dict[str, str], list[str]]:
    """``env NAME=value ... program args`` -> (the environment, the program's argv)."""
    words = shlex.split(line)
    assert words[0] == 'env', line
    env = {}
    i = 1
    while re.fullmatch(r'[A-Z_][A-Z0-9_]*=.*', words[i]):
        name, value = words[i].split('=', 1)
        env[name] = value
        i += 1
    return env, words[i:]


@pytest.fixture
def fake_bin(tmp_path: Path):
    """A folder on PATH for fake tools; ``fake_bin.add(name, body)`` writes one."""
    folder = tmp_path / 'bin'
    folder.mkdir()

    def add(name: str, body: str) -> None:
        tool = folder / name
        tool.write_text(f'#!/usr/bin/env bash\n{body}\n')
        tool.chmod(0o755)

    return folder, add


# --- every script ------------------------------------------------------------------


@pytest.mark.parametrize('script', [*SCRIPTS, 'common.sh'])
def test_bash_syntax(script):
    proc = subprocess.run(['bash', '-n', str(LAUNCH / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize('script', SCRIPTS)
def test_help_exits_0_before_any_check(script):
    proc = _run(script, '--help')  # no YAML, no NNODES, no IMAGE: --help must not need them
    assert proc.returncode == 0, proc.stderr
    assert 'usage:' in proc.stdout and '--dry-run' in proc.stdout and 'DRY_RUN' in proc.stdout
    assert 'SBATCH --nodes' not in proc.stdout and 'set -euo' not in proc.stdout  # the header comment only


# --- single node ---------------------------------------------------------------------


def test_single_node_dry_run():
    env, argv = _parse(*_dry_run('single_node.sh', YAML_ARG, *OVERRIDES, NPROC='3'))
    assert Path(argv[0]).name == 'composer'
    assert argv[1:] == ['-n', '3', TRAIN_PY, YAML_ARG, *OVERRIDES]
    assert env == {'FSDP_VERSION': '2', 'OMP_NUM_THREADS': str(max(1, CORES // 3)), 'TOKENIZERS_PARALLELISM': 'false'}


def test_runtime_defaults_do_not_override_the_user():
    env, _ = _parse(*_dry_run('single_node.sh', YAML_ARG, NPROC='1', FSDP_VERSION='1', OMP_NUM_THREADS='7',
                              TOKENIZERS_PARALLELISM='true', DRY_RUN='1'))
    assert env == {'FSDP_VERSION': '1', 'OMP_NUM_THREADS': '7', 'TOKENIZERS_PARALLELISM': 'true'}


GPU_LINES = ''.join(f'GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i}abc)\\n' for i in range(4))


@pytest.mark.parametrize(('nvidia_smi', 'visible', 'nproc'), [
    (f"printf '{GPU_LINES}  MIG 1g.10gb Device 0: (UUID: MIG-1)\\n'", None, '4'),  # MIG lines are not GPUs
    (f"printf '{GPU_LINES}'", '0,1', '2'),   # CUDA_VISIBLE_DEVICES (e.g. set by SLURM) wins
    (f"printf '{GPU_LINES}'", '', '1'),      # set but empty: CUDA sees no GPU
    ('echo "NVIDIA-SMI has failed" >&2; exit 9', None, '1'),  # no driver: one CPU process
], ids=['four-gpus', 'visible-devices', 'no-visible-device', 'no-driver'])
def test_single_node_nproc_defaults_to_the_gpus(fake_bin, nvidia_smi, visible, nproc):
    folder, add = fake_bin
    add('nvidia-smi', nvidia_smi)
    settings = {} if visible is None else {'CUDA_VISIBLE_DEVICES': visible}
    _, argv = _parse(*_dry_run('single_node.sh', YAML_ARG, fake_bin=folder, **settings))
    assert argv[1:3] == ['-n', nproc]


# --- multi-node: composer launcher and torchrun --------------------------------------------

MULTI = {'NNODES': '2', 'NPROC': '4', 'MASTER_ADDR': '10.0.0.7', 'MASTER_PORT': '4242'}


@pytest.mark.parametrize('node_rank', [0, 1])
def test_multi_node_composer_dry_run(node_rank, monkeypatch):
    env, argv = _parse(*_dry_run('multi_node_composer.sh', YAML_ARG, *OVERRIDES, NODE_RANK=str(node_rank), **MULTI))
    assert Path(argv[0]).name == 'composer'
    assert argv[1:] == ['--world_size', '8', '--node_rank', str(node_rank), '--master_addr', '10.0.0.7',
                        '--master_port', '4242', '-n', '4', TRAIN_PY, YAML_ARG, *OVERRIDES]
    assert env['FSDP_VERSION'] == '2' and env['OMP_NUM_THREADS'] == str(max(1, CORES // 4))

    # composer 0.32.1's own parser and multi-node checks accept it and derive this node's ranks.
    from composer.cli import launcher
    for name in ('WORLD_SIZE', 'LOCAL_WORLD_SIZE', 'NODE_RANK', 'BASE_RANK', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, 'argv', argv)
    args = launcher._parse_args()
    assert (args.world_size, args.nproc, args.node_rank, args.base_rank) == (8, 4, node_rank, 4 * node_rank)
    assert (args.master_addr, args.master_port) == ('10.0.0.7', 4242)
    assert args.training_script == TRAIN_PY and args.training_script_args == [YAML_ARG, *OVERRIDES]


@pytest.mark.parametrize('node_rank', [0, 1])
def test_multi_node_torchrun_dry_run(node_rank):
    env, argv = _parse(*_dry_run('multi_node_torchrun.sh', YAML_ARG, *OVERRIDES, NODE_RANK=str(node_rank), **MULTI))
    assert Path(argv[0]).name == 'torchrun'
    assert argv[1:] == ['--nnodes', '2', '--node_rank', str(node_rank), '--nproc_per_node', '4',
                        '--master_addr', '10.0.0.7', '--master_port', '4242', TRAIN_PY, YAML_ARG, *OVERRIDES]
    assert env['NODE_RANK'] == str(node_rank)  # composer reads it; torchrun does not set it

    from torch.distributed.run import get_args_parser
    args = get_args_parser().parse_args(argv[1:])
    assert (args.nnodes, args.node_rank, args.nproc_per_node) == ('2', node_rank, '4')
    assert (args.master_addr, args.master_port) == ('10.0.0.7', 4242)
    assert args.training_script == TRAIN_PY and args.training_script_args == [YAML_ARG, *OVERRIDES]


@pytest.mark.parametrize(('script', 'settings', 'message'), [
    ('multi_node_composer.sh', {**MULTI, 'NODE_RANK': '2'}, 'NODE_RANK=2 must be < NNODES=2'),
    ('multi_node_torchrun.sh', {**MULTI, 'NODE_RANK': '2'}, 'NODE_RANK=2 must be < NNODES=2'),
    ('multi_node_composer.sh', {**MULTI, 'NODE_RANK': '1', 'MASTER_ADDR': ''}, 'MASTER_ADDR is not set'),
    ('multi_node_torchrun.sh', {'NODE_RANK': '0', 'MASTER_ADDR': 'h'}, 'NNODES is not set'),
    ('multi_node_composer.sh', {**MULTI, 'NODE_RANK': 'one'}, 'NODE_RANK=one is not a non-negative integer'),
    ('multi_node_composer.sh', {**MULTI, 'NODE_RANK': '0', 'NPROC': '0'}, 'NPROC=0 must be >= 1'),
    ('multi_node_torchrun.sh', {**MULTI, 'NODE_RANK': '0', 'MASTER_PORT': '70000'}, 'MASTER_PORT=70000'),
    ('single_node.sh', {'DRY_RUN': 'maybe'}, 'DRY_RUN=maybe'),
    ('slurm.sbatch', {'MASTER_ADDR': 'h'}, 'NNODES is not set'),
    ('pytorchjob.sh', {}, 'IMAGE is not set'),
    ('pytorchjob.sh', {'IMAGE': 'img', 'JOB_NAME': 'Shear_Run'}, 'JOB_NAME=Shear_Run'),
])
def test_invalid_setting_fails_with_one_line_naming_it(script, settings, message):
    proc = _run(script, '--dry-run', YAML_ARG, **settings)
    assert proc.returncode != 0
    assert proc.stdout == ''  # nothing printed as if it would run
    (line,) = proc.stderr.splitlines()  # exactly one line
    assert line.startswith(f'{script}: {message}'), line


@pytest.mark.parametrize('script', ['single_node.sh', 'multi_node_composer.sh', 'slurm.sbatch'])
def test_missing_yaml_file_fails_before_launch(script):
    proc = _run(script, '--dry-run', 'yamls/no_such_run.yaml', NODE_RANK='0', SLURM_NNODES='2', **MULTI)
    assert proc.returncode != 0 and proc.stdout == ''
    assert proc.stderr == f'{script}: YAML not found: yamls/no_such_run.yaml\n'


# --- SLURM -----------------------------------------------------------------------------

SLURM = {'SLURM_NNODES': '2', 'SLURM_JOB_ID': '4242', 'SLURM_JOB_NODELIST': 'gpu-a[17-18]',
         'SLURM_GPUS_PER_NODE': 'h100:4', 'SLURM_CPUS_PER_TASK': '16'}


@pytest.mark.parametrize('how', ['flag', 'env'])
def test_slurm_dry_run_for_two_nodes(how):
    settings = {**SLURM, 'MASTER_ADDR': 'gpu-a17'}
    if how == 'flag':
        lines = _dry_run('slurm.sbatch', YAML_ARG, *OVERRIDES, **settings)
    else:  # sbatch passes arguments after the script name to the script, so also DRY_RUN=1
        proc = _run('slurm.sbatch', YAML_ARG, *OVERRIDES, DRY_RUN='1', **settings)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
    assert len(lines) == 3  # srun, then node ranks 0 and 1

    srun = shlex.split(lines[0])
    assert srun[0] == 'srun'
    i = srun.index('bash')
    assert {'--nodes=2', '--ntasks-per-node=1', '--cpus-per-task=16', '--export=ALL'} <= set(srun[1:i])
    assert srun[i + 1] == '-c' and 'NODE_RANK=$SLURM_NODEID' in srun[i + 2]  # read inside each task
    assert srun[i + 3:] == [str(LAUNCH / 'multi_node_composer.sh'), YAML_ARG, *OVERRIDES]

    port = str(20000 + 4242 % 20000)  # from the job id: jobs sharing a node get different ports
    for node_rank, line in enumerate(lines[1:]):
        env, argv = _parse(line)
        assert argv[1:] == ['--world_size', '8', '--node_rank', str(node_rank), '--master_addr', 'gpu-a17',
                            '--master_port', port, '-n', '4', TRAIN_PY, YAML_ARG, *OVERRIDES]
        assert env['FSDP_VERSION'] == '2'


def test_slurm_script_finds_the_checkout_from_its_spool_copy(tmp_path):
    """sbatch runs a copy of the script from its spool folder, in the submit directory."""
    spool_copy = tmp_path / 'job4242' / 'slurm_script'
    spool_copy.parent.mkdir()
    spool_copy.write_text((LAUNCH / 'slurm.sbatch').read_text())
    settings = {**SLURM, 'MASTER_ADDR': 'gpu-a17', 'SLURM_SUBMIT_DIR': str(REPO_ROOT)}
    proc = subprocess.run(['bash', str(spool_copy), '--dry-run', YAML_ARG], cwd=REPO_ROOT, env=_env(**settings),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == _dry_run('slurm.sbatch', YAML_ARG, **settings)


def test_slurm_tasks_run_what_the_dry_run_prints(fake_bin):
    """A fake srun runs the task once per node with SLURM_NODEID set, as SLURM does; a fake
    scontrol expands the node list, so MASTER_ADDR comes from it."""
    folder, add = fake_bin
    add('scontrol', '[[ "$1 $2 $3" == "show hostnames gpu-a[17-18]" ]] || exit 1; printf "gpu-a17\\ngpu-a18\\n"')
    add('srun', 'while [[ $1 == --* ]]; do shift; done\n'
                'for ((node = 0; node < SLURM_NNODES; node++)); do SLURM_NODEID=$node DRY_RUN=1 "$@"; done')
    dry = _dry_run('slurm.sbatch', YAML_ARG, *OVERRIDES, fake_bin=folder, **SLURM)
    submitted = _run('slurm.sbatch', YAML_ARG, *OVERRIDES, fake_bin=folder, **SLURM)
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout.splitlines() == dry[1:]
    assert [_parse(line)[1][3:9] for line in dry[1:]] == [
        ['--node_rank', str(rank), '--master_addr', 'gpu-a17', '--master_port', '24242'] for rank in (0, 1)]


# --- Kubernetes PyTorchJob -------------------------------------------------------------------

K8S = {'IMAGE': 'registry.example.com/shear:1', 'JOB_NAME': 'shear-test', 'NNODES': '3', 'NPROC': '4',
       'PVC_NAME': 'team-data'}
K8S_OVERRIDES = [*OVERRIDES, 'note=$(HOME) costs $$5']  # Kubernetes would expand these unless escaped


def _manifest(**settings: str) -> tuple[str, dict]:
    out = '\n'.join(_dry_run('pytorchjob.sh', YAML_ARG, *K8S_OVERRIDES, **settings))
    return out, yaml.safe_load(out)


def _kubernetes_expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion of container command/args: $(NAME) -> value, $$ -> $."""
    out, i = [], 0
    while i < len(text):
        if text.startswith('$$', i):
            out.append('$')
            i += 2
        elif text.startswith('$(', i) and ')' in text[i:]:
            end = text.index(')', i)
            out.append(env.get(text[i + 2:end], text[i:end + 1]))
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return ''.join(out)


def test_pytorchjob_manifest():
    text, job = _manifest(**K8S)
    assert text.splitlines()[0] == '# kubectl apply -f -'
    assert (job['apiVersion'], job['kind'], job['metadata']['name']) == ('kubeflow.org/v1', 'PyTorchJob', 'shear-test')
    specs = job['spec']['pytorchReplicaSpecs']
    assert (specs['Master']['replicas'], specs['Worker']['replicas']) == (1, 2)
    for spec in specs.values():
        pod = spec['template']['spec']
        (container,) = pod['containers']
        assert container['name'] == 'pytorch' and container['image'] == K8S['IMAGE']
        assert container['command'][:2] == ['bash', '-c'] and 'NODE_RANK="$RANK"' in container['command'][2]
        assert 'launch/multi_node_composer.sh' in container['command'][2]
        assert [_kubernetes_expand(arg, {'HOME': '/root'}) for arg in container['args']] == [YAML_ARG, *K8S_OVERRIDES]
        assert {e['name']: e['value'] for e in container['env']} == {'NNODES': '3', 'NPROC': '4', 'FSDP_VERSION': '2'}
        assert container['ports'] == [{'name': 'pytorchjob-port', 'containerPort': 23456}]
        assert container['resources']['limits'] == {'nvidia.com/gpu': '4'}
        mounts = {m['name']: m['mountPath'] for m in container['volumeMounts']}
        assert mounts == {'shared': '/mnt/shared', 'dshm': '/dev/shm'}
        volumes = {v['name']: v for v in pod['volumes']}
        assert volumes['shared']['persistentVolumeClaim'] == {'claimName': 'team-data'}
        assert volumes['dshm']['emptyDir']['medium'] == 'Memory'


def test_pytorchjob_of_one_node_has_no_workers():
    _, job = _manifest(**{**K8S, 'NNODES': '1'})
    assert list(job['spec']['pytorchReplicaSpecs']) == ['Master']


@pytest.mark.parametrize('pod_rank', [0, 2])
def test_pytorchjob_container_runs_composer_with_the_pod_rank(pod_rank):
    """Run the rendered container command here, with the variables the operator sets
    (WORLD_SIZE and RANK count pods): composer gets NODE_RANK=RANK and 3 x 4 processes."""
    _, job = _manifest(**K8S)
    replica = job['spec']['pytorchReplicaSpecs']['Worker' if pod_rank else 'Master']
    (container,) = replica['template']['spec']['containers']
    operator_env = {'MASTER_ADDR': 'shear-test-master-0', 'MASTER_PORT': '23456', 'WORLD_SIZE': '3',
                    'RANK': str(pod_rank), 'PYTHONUNBUFFERED': '0', 'HOME': '/root'}
    pod_env = {**{e['name']: e['value'] for e in container['env']}, **operator_env}
    argv = [_kubernetes_expand(word, pod_env) for word in container['command'] + container['args']]
    proc = subprocess.run(argv, cwd=REPO_ROOT, env=_env(**pod_env, DRY_RUN='1'), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    _, composer = _parse(proc.stdout)
    assert composer[1:] == ['--world_size', '12', '--node_rank', str(pod_rank), '--master_addr', 'shear-test-master-0',
                            '--master_port', '23456', '-n', '4', TRAIN_PY, YAML_ARG, *K8S_OVERRIDES]


def test_pytorchjob_pipes_the_manifest_to_kubectl(fake_bin, tmp_path):
    folder, add = fake_bin
    add('kubectl', f'printf "%s\\n" "$@" > {tmp_path}/args; cat > {tmp_path}/stdin')
    proc = _run('pytorchjob.sh', YAML_ARG, *K8S_OVERRIDES, fake_bin=folder, NAMESPACE='team-a', **K8S)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / 'args').read_text().splitlines() == ['apply', '-f', '-', '--namespace', 'team-a']
    _, dry = _manifest(**K8S)
    assert yaml.safe_load((tmp_path / 'stdin').read_text()) == dry


# --- a real job ------------------------------------------------------------------------------


def test_torchrun_script_trains_two_processes(corpus_dir, tmp_path):
    """1 node x 2 processes (gloo on CPU) for 2 batches: exits 0 and checkpoints."""
    import torch

    settings = {'NNODES': '1', 'NODE_RANK': '0', 'NPROC': '2', 'MASTER_ADDR': '127.0.0.1',
                'MASTER_PORT': str(free_port()), 'WANDB_MODE': 'offline'}
    proc = _run('multi_node_torchrun.sh', str(REPO_ROOT / 'yamls' / 'tiny.yaml'), f'variables.data_dir={corpus_dir}',
                f'variables.run_dir={tmp_path}', f'save_folder={tmp_path / "checkpoints"}', 'max_duration=2ba',
                'eval_interval=2ba', 'save_interval=2ba', 'eval_subset_num_batches=1', **settings)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    state = torch.load(tmp_path / 'checkpoints' / 'ep0-ba2-rank0.pt', map_location='cpu', weights_only=False)
    assert state['state']['timestamp']['Timestamp']['batch'] == 2
    assert len(state['rng']) == 2  # one RNG state per rank: both processes trained
