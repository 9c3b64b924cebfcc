"""The package as a user installs it: ``pip install .`` (not editable) into a fresh venv, used outside the checkout.

The fresh venv gets the pinned dependencies from this test run's environment (a ``.pth`` line:
installing torch anew takes minutes), but this project only from its wheel. Every command runs
from a folder outside the checkout, with no ``PYTHONPATH``, so nothing is found through the
repository's layout.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import REPO_ROOT, TINY_YAML

pytestmark = pytest.mark.timeout(900)


def _clean_env(home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ('PYTHONPATH', 'FSDP_VERSION')}
    env.update(HOME=str(home), WANDB_MODE='offline', TOKENIZERS_PARALLELISM='false')
    return env


def _source_tree(dest: Path) -> Path:
    """The checkout's files as git lists them (tracked and new, not ignored): what a clone would hold."""
    listed = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True).stdout.split('\0')
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if not (source.exists() or source.is_symlink()):
            continue  # deleted in the working tree
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    return dest


@pytest.fixture(scope='module')
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A venv holding this project from its wheel; returns its bin folder and a work folder outside the checkout."""
    root = tmp_path_factory.mktemp('installed')
    source = _source_tree(root / 'source')
    venv = root / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True)
    purelib = 'import sysconfig; print(sysconfig.get_paths()["purelib"])'
    site = Path(subprocess.run([str(venv / 'bin' / 'python'), '-c', purelib],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / 'dependencies.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
    work = root / 'work'
    work.mkdir()
    env = _clean_env(root)
    install = subprocess.run([str(venv / 'bin' / 'python'), '-m', 'pip', 'install', '--no-deps', '--no-build-isolation',
                              '--no-index', '--quiet', str(source)], cwd=work, env=env, capture_output=True, text=True)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    where = subprocess.run([str(venv / 'bin' / 'python'), '-c', 'import composer_plugins, data_prep; '
                            'print(composer_plugins.__file__); print(data_prep.__file__)'],
                           cwd=work, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert all(Path(path).is_relative_to(site) for path in where), where  # the wheel's copy, not the checkout
    return {'bin': venv / 'bin', 'work': work, 'root': root}


def test_installed_shear_demo_tiny_runs_outside_the_checkout(installed):
    out = installed['work'] / 'tiny'
    proc = subprocess.run([str(installed['bin'] / 'shear'), 'demo', '--tiny', '--out', str(out)], cwd=installed['work'],
                          env=_clean_env(installed['root']), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert 'Tiny demo finished' in proc.stderr
    assert (out / 'checkpoints' / 'latest-rank0.pt').exists()


def test_llmfoundry_train_entry_finds_the_components_without_an_import(installed, corpus_dir):
    """llm-foundry's own ``train_from_yaml`` runs ``yamls/tiny.yaml`` unchanged.

    The model, tokenizer, callbacks, logger and the recipe's config transform are found through
    the installed entry points.
    """
    run_dir = installed['work'] / 'foundry'
    overrides = [f'variables.data_dir={corpus_dir}', f'variables.run_dir={run_dir}', 'max_duration=4ba',
                 'eval_interval=2ba', 'save_interval=4ba']
    script = ('import sys\nfrom llmfoundry.command_utils import train_from_yaml\n'
              'trainer = train_from_yaml(sys.argv[1], sys.argv[2:])\n'
              "assert 'FiniteGuard' in {type(c).__name__ for c in trainer.state.callbacks}\n")
    proc = subprocess.run([str(installed['bin'] / 'python'), '-c', script, str(TINY_YAML), *overrides],
                          cwd=installed['work'],
                          env=_clean_env(installed['root']), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert (run_dir / 'checkpoints' / 'ep0-ba4-rank0.pt').exists()
    logged = (run_dir / 'metrics.jsonl').read_text()  # the jsonl logger, found through its entry point
    assert 'loss/train/total' in logged and 'metrics/eval/LanguageCrossEntropy' in logged
