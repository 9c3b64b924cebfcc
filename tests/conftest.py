"""Shared fixtures: a private TMPDIR, real MDS shards of Python source, run helpers."""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_YAML = REPO_ROOT / 'yamls' / 'tiny.yaml'
PRUNE_TINY_YAML = REPO_ROOT / 'yamls' / 'prune_tiny.yaml'

# mosaicml-streaming leaves lock files in TMPDIR: keep ours private and set it before
# anything imports tempfile-dependent code. It holds every test's files (checkpoints,
# models: gigabytes per session), so it goes when the session's process exits (registered
# first, so it runs after the other exit handlers); SHEAR_KEEP_TEST_TMP=1 keeps it.
_PRIVATE_TMP = tempfile.mkdtemp(prefix='shear-tests-')
if os.environ.get('SHEAR_KEEP_TEST_TMP') != '1':
    atexit.register(shutil.rmtree, _PRIVATE_TMP, ignore_errors=True)
os.environ['TMPDIR'] = _PRIVATE_TMP
tempfile.tempdir = _PRIVATE_TMP
os.environ.setdefault('WANDB_MODE', 'offline')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')


@pytest.fixture(scope='session')
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Byte-level MDS shards (train/eval, 128-token rows) of the stdlib's Python source."""
    from composer_plugins.tools.demo.python_corpus import build_python_corpus_shards
    return build_python_corpus_shards(tmp_path_factory.mktemp('corpus'), seq_len=128, train_rows=600, eval_rows=48)


@pytest.fixture(scope='session')
def tiny_teacher_dir(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A teacher for distillation: ``yamls/tiny.yaml`` trained 40 steps, saved as an HF folder."""
    from composer_plugins.config.load import load_run_config
    from composer_plugins.train_entry import run

    out = tmp_path_factory.mktemp('teacher')
    cfg = load_run_config(str(TINY_YAML), [
        f'variables.data_dir={corpus_dir}', f'variables.run_dir={out / "run"}', 'max_duration=40ba',
        'eval_interval=1000ba', 'save_folder=null', 'seed=5', 'loggers=null',
    ])
    trainer = run(cfg)
    teacher = out / 'hf'
    trainer.state.model.model.save_pretrained(teacher)
    trainer.state.model.tokenizer.save_pretrained(teacher)
    trainer.close()
    return teacher


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for ``MASTER_PORT``)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def subprocess_env(unset: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
    """Environment for child runs: the repo importable, the private TMPDIR, the ``unset`` names removed."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get('PYTHONPATH', '')]))
    env.setdefault('PYTHONFAULTHANDLER', '1')  # stacks on SIGABRT: see run_train
    env.update(extra)
    for name in unset:
        env.pop(name, None)
    return env


def train_command(*overrides: str, nproc: int = 1, yaml: Path = TINY_YAML) -> list[str]:
    """``python train.py YAML ...`` or ``composer -n N train.py YAML ...``."""
    if nproc == 1:
        return [sys.executable, str(REPO_ROOT / 'train.py'), str(yaml), *overrides]
    launcher = [sys.executable, '-m', 'composer.cli.launcher', '-n', str(nproc)]
    return [*launcher, str(REPO_ROOT / 'train.py'), str(yaml), *overrides]


def run_train(
    *overrides: str, nproc: int = 1, yaml: Path = TINY_YAML, timeout: float = 300, unset: tuple[str, ...] = (),
    **env: str,
) -> subprocess.CompletedProcess:
    """Run a training job to completion and fail the test with its log if it fails.

    The job runs in its own process group: past ``timeout`` every process of it (launcher, ranks, data
    workers) is aborted, and then killed, so a hung run leaves nothing behind to slow the tests after it;
    the failure shows the end of its log with the Python stacks of local rank 0's threads (where it hung).
    """
    command = train_command(*overrides, nproc=nproc, yaml=yaml)
    with subprocess.Popen(command, cwd=REPO_ROOT, env=subprocess_env(unset, **env), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as child:
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGABRT)  # PYTHONFAULTHANDLER: each process prints its threads' stacks
            try:
                stdout, stderr = child.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                stdout, stderr = child.communicate()
            pytest.fail(f'training did not end within {timeout:.0f} s; the end of its log:\n'
                        f'{stdout[-2000:]}\n{stderr[-20000:]}')
    if child.returncode != 0:
        pytest.fail(f'training failed ({child.returncode}):\n{stdout[-4000:]}\n{stderr[-8000:]}')
    return subprocess.CompletedProcess(command, child.returncode, stdout, stderr)


MIXTURE_YAML = REPO_ROOT / 'yamls' / 'mixture_tiny.yaml'


@pytest.fixture(scope='session')
def mixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 byte-level domains: ``alpha`` / ``beta`` (600 rows of stdlib source each) and ``small``
    (40 rows of generated arithmetic, ``17 + 5 = 22``: a distribution of its own)."""
    import random

    from composer_plugins.tools.demo.python_corpus import stdlib_source_files
    from data_prep.mds import pack_documents, write_token_rows
    from data_prep.tokenizers import load_tokenizer

    tokenizer = load_tokenizer('byte-level')
    files = stdlib_source_files()
    rng = random.Random(0)

    def arithmetic(lines: int) -> str:
        pairs = [(rng.randrange(100), rng.randrange(100)) for _ in range(lines)]
        return ''.join(f'{a} + {b} = {a + b}\n' for a, b in pairs)

    sources = {
        'alpha': (p.read_text(encoding='utf-8', errors='replace') for p in files[0::3]),
        'beta': (p.read_text(encoding='utf-8', errors='replace') for p in files[1::3]),
        'small': (arithmetic(50) for _ in range(1000)),
    }
    rows = {'alpha': 600, 'beta': 600, 'small': 40}
    root = tmp_path_factory.mktemp('mixture')
    for name, texts in sources.items():
        packed = pack_documents((tokenizer(t)['input_ids'] for t in texts), 128, tokenizer.eos_token_id)
        eval_rows = [next(packed) for _ in range(16)]
        train_rows = [next(packed) for _ in range(rows[name])]
        write_token_rows(root / name / 'eval', eval_rows, len(tokenizer))
        write_token_rows(root / name / 'train', train_rows, len(tokenizer))
    return root


@pytest.fixture(autouse=True)
def release_streaming_shared_memory():
    """Close the shared memory mosaicml-streaming opens during a test when the test ends
    (see :mod:`composer_plugins.data.streaming_memory`); segments created by wider-scoped
    fixtures are left to ``atexit`` as usual."""
    from composer_plugins.data.streaming_memory import released_streaming_memory

    with released_streaming_memory():
        yield
