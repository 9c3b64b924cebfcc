"""`shear plan` for gpu_throughput.py's pruning run versus the peak memory that run measured.

Builds the pruning row's exact run (``prune_tiny.yaml`` plus gpu_throughput's overrides, the same
``config.json``), asks the planner for its per-GPU estimate (``shear plan ... --json``, run as
``python -m composer_plugins.cli.main`` since the device has no installed ``shear``), and reads
the measured ``memory/peak_allocated_mem`` (GB, MemoryMonitor; CUDA only) of the pruning row from
gpu_throughput's ``.json``. Prints one JSON line; the measured side is ``null`` when there is none.

    python benchmarks/device/plan_vs_measured.py [--smoke] [--measured PATH.json]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / 'benchmarks'))

import gpu_throughput as gt  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--smoke', action='store_true', help="gpu_throughput's --smoke run (plan with --device cpu)")
    parser.add_argument('--measured', type=Path, help="gpu_throughput's .json (its pruning row's peak memory)")
    parser.add_argument('--batch-size', type=int, help="gpu_throughput's --batch-size (the same run)")
    args = parser.parse_args()
    settings = gt.parse_args((['--smoke'] if args.smoke else [])
                             + (['--batch-size', str(args.batch_size)] if args.batch_size else []))
    arm = next(a for a in gt.ARMS if a.kind == 'pruning')
    with tempfile.TemporaryDirectory(prefix='plan-vs-measured-') as tmp:
        work = Path(tmp)
        model_dir = gt.write_model_config(work / 'model-source', gt.model_fields(settings, arm.model))
        overrides = gt.run_overrides(arm, settings, work / 'data', model_dir, work / 'run')
        command = [sys.executable, '-m', 'composer_plugins.cli.main', 'plan', arm.yaml, *overrides, '--json']
        if args.smoke:
            command += ['--device', 'cpu']
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        return done.returncode
    plan = json.loads(done.stdout)
    measured_gb = None
    if args.measured and args.measured.exists():
        rows = json.loads(args.measured.read_text())['results']
        measured_gb = next((r['metrics'].get('peak_memory_gb') for r in rows if r['kind'] == 'pruning'), None)
    plan_gb = plan['total_bytes'] / 1e9
    print(json.dumps({
        'yaml': arm.yaml, 'device': 'cpu' if args.smoke else 'gpu', 'phase': plan.get('phase'),
        'plan_total_gib': plan['total_gib'], 'plan_total_gb': round(plan_gb, 3),
        'measured_peak_allocated_gb': measured_gb,
        'measured_over_plan': round(measured_gb / plan_gb, 3) if measured_gb else None,
        'note': None if measured_gb is not None else
        'measured n/a (MemoryMonitor logs CUDA memory only, or no pruning row)',
    }))
    return 0


if __name__ == '__main__':
    sys.exit(main())
