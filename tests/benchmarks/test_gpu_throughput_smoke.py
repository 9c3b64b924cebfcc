"""`benchmarks/gpu_throughput.py` runs end to end: on the CPU (`--smoke`) and, with CUDA, at its default size.

Every number in its table is a metric that a real training run logged (SpeedMonitor, MemoryMonitor).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT, subprocess_env

SCRIPT = REPO_ROOT / 'benchmarks' / 'gpu_throughput.py'
ROW_LABELS = {
    'plain': 'plain step (source)',
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


def palm_flops_per_batch(fields: dict, batch: int, seq: int) -> int:
    """6 N + 12 L d S per token, N = non-embedding parameters + the lm_head matrix (untied Llama, no biases)."""
    hidden, ffn, layers = fields['hidden_size'], fields['intermediate_size'], fields['num_hidden_layers']
    head_dim = fields['head_dim']
    q, kv = fields['num_attention_heads'] * head_dim, fields['num_key_value_heads'] * head_dim
    layer = hidden * (2 * q + 2 * kv) + 3 * hidden * ffn + 2 * hidden
    matmul = layers * layer + hidden + fields['vocab_size'] * hidden
    return batch * seq * (6 * matmul + 12 * layers * q * seq)


def check_outputs(proc: subprocess.CompletedProcess, out: Path) -> tuple[dict[str, dict[str, str]], dict]:
    markdown = out.read_text()
    assert markdown in proc.stdout  # the table printed is the table written
    rows = table_rows(markdown)
    assert list(rows) == list(ROW_LABELS.values())
    data = json.loads(out.with_suffix('.json').read_text())
    results = {r['kind']: r for r in data['results']}
    assert list(results) == list(ROW_LABELS)
    for kind, label in ROW_LABELS.items():
        row, metrics = rows[label], results[kind]['metrics']
        assert results[kind]['error'] is None
        # the table's numbers are SpeedMonitor's metrics of that run, not anything timed by the script
        assert metrics['tokens_per_sec'] > 0 and metrics['batches_per_sec'] > 0
        assert float(row['tokens/s'].replace(',', '')) == pytest.approx(metrics['tokens_per_sec'], abs=0.5)
        assert float(row['step time (s)']) == pytest.approx(1 / metrics['batches_per_sec'], abs=1e-4)
        assert float(row['vs plain']) > 0
        assert metrics['flops_per_sec'] > 0 and float(row['TFLOP/s per device']) > 0
    assert float(rows[ROW_LABELS['plain']]['vs plain']) == 1.0
    assert results['exported']['params'] < results['pruning']['params'] == results['plain']['params']
    assert results['pruning']['metrics']['lambda1_layer'] != 0  # the pruner learns (under FSDP2 too)
    return rows, data


def check_flops(data: dict) -> None:
    """SpeedMonitor's FLOPs are ShearCausalLM.flops_per_batch: the dense source's for the pruning run too."""
    batch = data['settings']['batch_size'] * data['settings']['gpus']
    results = {r['kind']: r for r in data['results']}
    for result in results.values():
        expected = palm_flops_per_batch(result['config'], batch, data['settings']['seq_len'])
        assert result['flops_per_batch'] == pytest.approx(expected, rel=1e-5)
    assert results['pruning']['flops_per_batch'] == pytest.approx(results['plain']['flops_per_batch'], rel=1e-6)


def test_smoke_run_on_cpu(tmp_path: Path) -> None:
    """``--smoke`` with ``--peak-tflops``: a CPU has no known peak, so the option is what gives SpeedMonitor one."""
    out = tmp_path / 'gpu_throughput.md'
    proc = run_benchmark(out, '--smoke', '--peak-tflops', '0.001', timeout=300)
    rows, data = check_outputs(proc, out)
    assert 'not GPU numbers' in out.read_text()
    check_flops(data)
    for result in data['results']:  # MFU is SpeedMonitor's: device FLOP/s over gpu_flops_available (1e9)
        metrics = result['metrics']
        assert math.isclose(metrics['mfu'], metrics['device_flops_per_sec'] / 1e9, rel_tol=1e-6)
        assert rows[result['label']]['MFU'] == f'{metrics["mfu"]:.1%}'
    if not torch.cuda.is_available():  # MemoryMonitor measures CUDA memory only
        assert data['device'].startswith('CPU')
        assert all(row['peak memory (GB)'] == 'n/a' for row in rows.values())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_default_config_on_gpu(tmp_path: Path) -> None:
    out = tmp_path / 'gpu_throughput.md'
    proc = run_benchmark(out, '--steps', '2', '--warmup', '1', timeout=900)
    rows, data = check_outputs(proc, out)
    assert data['settings']['precision'] == 'amp_bf16'
    for result in data['results']:
        assert result['metrics']['peak_memory_gb'] > 0
        if result['metrics']['mfu'] is not None:  # SpeedMonitor knows the device's peak
            assert 0 < result['metrics']['mfu'] < 1
