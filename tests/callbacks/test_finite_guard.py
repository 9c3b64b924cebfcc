"""The finite guard on real runs: a diverging run stops with one message, keeps its last finite
checkpoint through rotation, writes nothing non-finite, and autoresume continues from that checkpoint."""
from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT, subprocess_env, train_command

DIVERGE = ('optimizer.lr=1.0e6', 'max_duration=12ba', 'console_log_interval=1ba', 'eval_interval=1000ba')


def _train(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(train_command(*overrides), cwd=REPO_ROOT, env=subprocess_env(), capture_output=True,
                          text=True, timeout=300)


def _errors(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if ' ERROR: ' in line or 'Traceback' in line]


def _all_finite(checkpoint: Path) -> bool:
    state = torch.load(checkpoint, map_location='cpu', weights_only=False)['state']['model']
    return all(bool(torch.isfinite(t).all()) for t in state.values() if torch.is_tensor(t) and t.is_floating_point())


def test_diverging_run_keeps_last_finite_checkpoint_and_autoresumes_from_it(corpus_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / 'run'
    args = (*DIVERGE, f'variables.data_dir={corpus_dir}', f'variables.run_dir={run_dir}', 'save_interval=2ba',
            'save_num_checkpoints_to_keep=1')
    proc = _train(*args)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    errors = _errors(proc)
    assert len(errors) == 1, errors
    good = re.search(r'last good checkpoint is (\S+?):', errors[0])
    assert good and 'non-finite' in errors[0] and 'batch' in errors[0], errors[0]
    checkpoints = sorted((run_dir / 'checkpoints').glob('ep*-rank0.pt'))
    assert checkpoints, 'rotation deleted every checkpoint'
    assert [p.name for p in checkpoints] == [Path(good.group(1)).name]
    assert all(_all_finite(p) for p in checkpoints)
    assert (run_dir / 'checkpoints' / 'latest-rank0.pt').resolve() == checkpoints[-1].resolve()
    stopped_at = int(re.search(r'ba(\d+)', checkpoints[-1].name).group(1))
    assert stopped_at < 12, 'nothing that looks finished may be written'

    resumed = _train(*args, 'autoresume=true')
    assert resumed.returncode == 2
    batches = [int(b) for b in re.findall(r'\[batch=(\d+)/12\]', resumed.stdout + resumed.stderr)]
    assert batches and batches[0] == stopped_at + 1, batches  # continued from the finite checkpoint, not from 0
    assert [p.name for p in sorted((run_dir / 'checkpoints').glob('ep*-rank0.pt'))] == [checkpoints[-1].name]


def _train_in_process(*overrides: str) -> str:
    """Runs ``tiny.yaml`` here (no interpreter start-up) and returns the message it stopped with."""
    from composer_plugins.config.load import load_run_config
    from composer_plugins.errors import TrainingStopped
    from composer_plugins.train_entry import run

    with pytest.raises(TrainingStopped) as stopped:
        run(load_run_config(str(REPO_ROOT / 'yamls' / 'tiny.yaml'), list(overrides)))
    return str(stopped.value)


def test_nonfinite_loss_stops_before_the_step_or_skips_up_to_the_limit(corpus_dir: Path, tmp_path: Path) -> None:
    common = (*DIVERGE, f'variables.data_dir={corpus_dir}', 'save_interval=1000ba', 'loggers=null')
    error = _train_in_process(*common, f'variables.run_dir={tmp_path / "stop"}')
    first_bad = int(re.search(r'training loss is nan at batch (\d+)', error).group(1))
    assert 'No checkpoint was written' in error and 'max_nonfinite_batches=0' in error

    error = _train_in_process(*common, f'variables.run_dir={tmp_path / "skip"}',
                              'callbacks.finite_guard.max_nonfinite_batches=2')
    assert f'at batch {first_bad + 2} (3 non-finite batch(es) in a row' in error, error  # two were skipped


def test_guard_arguments_are_checked_at_config_load(corpus_dir: Path) -> None:
    from composer_plugins.config.load import load_run_config
    from composer_plugins.errors import ConfigError

    with pytest.raises(ConfigError, match=r'callbacks\.finite_guard\.max_nonfinite_batches: got -1'):
        load_run_config(str(REPO_ROOT / 'yamls' / 'tiny.yaml'), ['callbacks.finite_guard.max_nonfinite_batches=-1',
                                                                  f'variables.data_dir={corpus_dir}'])


def test_skipped_batch_leaves_weights_and_optimizer_state_alone() -> None:
    """The functional core: a NaN loss is flagged and clearing the gradients makes AdamW a no-op."""
    from composer_plugins.callbacks.finite_guard import is_nonfinite, nonfinite_tensors

    layer = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=0.1, weight_decay=0.1)
    before = [p.detach().clone() for p in layer.parameters()]
    loss = layer(torch.tensor([[math.nan, 1.0, 2.0]])).sum()
    assert is_nonfinite(loss) and is_nonfinite({'total': loss}) and not is_nonfinite(torch.tensor(1.0))
    loss.backward()
    for p in layer.parameters():
        p.grad = None
    optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(before, layer.parameters()))
    assert optimizer.state == {} or all(not s for s in optimizer.state.values())
    with torch.no_grad():
        layer.bias[0] = math.inf
    assert nonfinite_tensors(layer) == ['bias']
