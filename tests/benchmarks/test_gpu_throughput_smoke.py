"""`benchmarks/gpu_throughput.py` runs end to end: on the CPU (`--smoke`) and, with CUDA, at its default size."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT, subprocess_env

SCRIPT = REPO_ROOT / 'benchmarks' / 'gpu_throughput.py'
ROW_LABELS = {
    'plain': 'plain step (source, HF model)',
    'pruning': 'pruning step (source + masks + Lagrangian)',
    'exported': 'exported-model step (target shape)',
}


def run_benchmark(out: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args, '--out', str(out)],
        cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=timeout,
    )
    if proc.returncode != 0:
        pytest.fail(f'gpu_throughput.py failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}')
    return proc


def table_rows(markdown: str) -> dict[str, dict[str, str]]:
    """The results table as {row label: {column header: cell}}."""
    lines = [line for line in markdown.splitlines() if line.startswith('|')]
    header = [cell.strip() for cell in lines[0].strip('|').split('|')]
    rows = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip('|').split('|')]
        rows[cells[0]] = dict(zip(header, cells))
    return rows


def check_outputs(proc: subprocess.CompletedProcess, out: Path) -> tuple[dict[str, dict[str, str]], dict]:
    markdown = out.read_text()
    assert markdown in proc.stdout  # the table printed is the table written
    rows = table_rows(markdown)
    assert set(rows) == set(ROW_LABELS.values())
    for row in rows.values():
        assert float(row['tokens/s'].replace(',', '')) > 0
        assert float(row['step time (s)']) > 0
        assert float(row['vs plain']) > 0
    assert float(rows[ROW_LABELS['plain']]['vs plain']) == 1.0

    data = json.loads(out.with_suffix('.json').read_text())
    assert [r['kind'] for r in data['results']] == list(ROW_LABELS)
    assert all(r['tokens_per_s'] > 0 and r['error'] is None for r in data['results'])
    assert data['ratios']['pruning_over_plain'] > 0 and data['ratios']['exported_over_plain'] > 0
    pruning, exported = data['results'][1], data['results'][2]
    assert exported['params'] < pruning['params']
    assert pruning['mask_params_updated'] is True  # the masks learn under FSDP2 (PrunerOutput is a pytree)
    return rows, data


def test_smoke_run_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / 'gpu_throughput.md'
    proc = run_benchmark(out, '--smoke', timeout=180)
    rows, data = check_outputs(proc, out)
    assert 'not GPU numbers' in out.read_text()
    assert data['settings']['device'] == 'cpu' and data['environment']['backend'] == 'gloo'
    assert all(row['MFU'] == 'n/a' for row in rows.values())  # no peak FLOP/s for a CPU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_default_config_on_gpu(tmp_path: Path) -> None:
    out = tmp_path / 'gpu_throughput.md'
    proc = run_benchmark(out, '--steps', '2', '--warmup', '1', timeout=900)
    rows, data = check_outputs(proc, out)
    assert data['settings']['dtype'] == 'bf16' and data['environment']['backend'] == 'nccl'
    assert all(r['peak_memory_gib'] > 0 for r in data['results'])
    if data['environment']['peak_tflops'] is not None:
        assert all(0 < r['mfu'] < 1 for r in data['results'])
