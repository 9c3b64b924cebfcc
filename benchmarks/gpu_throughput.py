"""GPU training throughput and MFU of real training runs: plain, pruning, and the exported target's shape.

Every row is a real run of the project's training entry (``composer_plugins.train_entry``) from a
bundled run YAML; throughput and MFU are what Composer's ``SpeedMonitor`` logged (read back from
the run's ``jsonl`` metrics), peak memory what ``MemoryMonitor`` logged. Nothing is timed here.

1. ``plain``: ``tiny.yaml`` with the source model (``ShearCausalLM`` without pruning).
2. ``pruning``: ``prune_tiny.yaml`` with the same source and the target below: every mask type
   sampled each step and applied by hooks, loss ``lm + lagrangian``, the ``mask_learning``,
   ``lagrangian`` and ``pruning_monitor`` callbacks (``init: dense``, no settle phase).
3. ``exported``: ``tiny.yaml`` with a model of the target shape: what the exported model runs
   at in continued pre-training.

All three: random init from a ``config.json`` (``model.pretrained=false``), byte-level Python
source of ``--seq-len`` tokens a row, AdamW with a constant rate, no evaluation, no checkpoints.
``--warmup`` + ``--steps`` batches; ``SpeedMonitor(window_size=steps)`` at the last batch
averages exactly the ``steps`` batches after the warm-up. Model FLOPs are
``ShearCausalLM.flops_per_batch`` (PaLM: ``6 N + 12 L d S`` per token; the pruning run counts the
dense source); MFU is against SpeedMonitor's peak for the device and precision (H100 SXM / H200
989 TFLOP/s bf16) or ``--peak-tflops``.

Default source, "1.1B": 22 layers, hidden 2048, 16 heads / 4 KV heads, FFN 5504, vocab 32000,
untied; target: 11 layers, hidden 1024, 8 / 2 heads, FFN 2752. Batch 4 x 4096 per GPU, bf16
autocast (``precision=amp_bf16``), 5 warm-up + 20 measured steps.

With ``--gpus 1`` the runs go one after the other in this process (``train_entry.run``), and the
entry drops ``fsdp_config`` as every one-process run does: no FSDP. With ``--gpus N`` each run is
``composer -n N -m composer_plugins.train_entry ...`` with FSDP2 (``fsdp_config.mixed_precision:
FULL``, which a pruning run requires, for every row).

    PYTHONPATH=. python benchmarks/gpu_throughput.py                # one GPU
    PYTHONPATH=. python benchmarks/gpu_throughput.py --gpus 8       # FSDP2 over 8 GPUs
    PYTHONPATH=. python benchmarks/gpu_throughput.py --smoke        # CPU, tiny model, seconds

``--smoke``: a tiny model (4 layers, hidden 64) on the CPU, fp32, one thread, 1 + 2 steps: it checks
the script, its numbers are not GPU numbers, and a CPU has no known peak (no MFU unless
``--peak-tflops``). ``--override key=value`` (repeatable) goes to every run, e.g.
``fsdp_config.activation_checkpointing=true``.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

log = logging.getLogger('bench.gpu_throughput')

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / 'benchmarks' / 'results' / 'gpu_throughput.md'
SMOKE_OUT = REPO_ROOT / 'benchmarks' / 'results' / 'gpu_throughput_smoke.md'
TRAIN_MODULE = 'composer_plugins.train_entry'

# LlamaConfig fields of the source, and the pruning target (every dimension halved).
SOURCE_1B = dict(vocab_size=32000, hidden_size=2048, intermediate_size=5504, num_hidden_layers=22,
                 num_attention_heads=16, num_key_value_heads=4, tie_word_embeddings=False)
TARGET_1B = dict(num_layers=11, num_attention_heads=8, num_key_value_heads=2, hidden_size=1024, intermediate_size=2752)
SMOKE_SOURCE = dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                    num_attention_heads=8, num_key_value_heads=2, tie_word_embeddings=False)
SMOKE_TARGET = dict(num_layers=2, num_attention_heads=4, num_key_value_heads=1, hidden_size=32, intermediate_size=64)
BYTE_LEVEL_IDS = dict(bos_token_id=None, eos_token_id=256, pad_token_id=257)  # the byte-level tokenizer's

# What the table reads from the run's metrics: SpeedMonitor's and MemoryMonitor's keys (composer 0.32.1).
METRIC_KEYS = {
    'batches_per_sec': 'throughput/batches_per_sec',
    'tokens_per_sec': 'throughput/tokens_per_sec',
    'device_tokens_per_sec': 'throughput/device/tokens_per_sec',
    'flops_per_sec': 'throughput/flops_per_sec',
    'device_flops_per_sec': 'throughput/device/flops_per_sec',
    'mfu': 'throughput/device/mfu',
    'peak_memory_gb': 'memory/peak_allocated_mem',
    'lambda1_layer': 'l0/lambda1/layer',  # the pruning run's: a multiplier that stays 0 never got a gradient
}


@dataclass(frozen=True)
class Arm:
    """One measured run: a bundled YAML and the model it trains."""
    kind: str
    label: str
    yaml: str
    model: str  # 'source' or 'target'


ARMS = (
    Arm('plain', 'plain step (source)', 'tiny.yaml', 'source'),
    Arm('pruning', 'pruning step (source + masks + Lagrangian)', 'prune_tiny.yaml', 'source'),
    Arm('exported', 'exported-model step (target shape)', 'tiny.yaml', 'target'),
)


@dataclass(frozen=True)
class Settings:
    """What one benchmark measures and how."""
    batch_size: int       # sequences per GPU and step
    seq_len: int
    steps: int            # measured steps (SpeedMonitor's window)
    warmup: int
    gpus: int
    precision: str        # run config `precision`
    peak_tflops: Optional[float]
    source: dict[str, Any]
    target: dict[str, int]
    overrides: tuple[str, ...]
    out: Path
    smoke: bool

    @property
    def batches(self) -> int:
        return self.warmup + self.steps


@dataclass
class ArmResult:
    """The metrics one run logged at its last batch (``None`` where it logged none)."""
    kind: str
    label: str
    config: dict[str, Any]   # LlamaConfig fields of the model trained
    params: int
    metrics: dict[str, Optional[float]] = field(default_factory=dict)
    error: Optional[str] = None

    def get(self, name: str) -> Optional[float]:
        return self.metrics.get(name)

    @property
    def step_time_s(self) -> Optional[float]:
        rate = self.get('batches_per_sec')
        return 1 / rate if rate else None

    @property
    def flops_per_batch(self) -> Optional[float]:
        """Model FLOPs of one global batch, as SpeedMonitor summed ``flops_per_batch`` over the ranks."""
        flops, rate = self.get('flops_per_sec'), self.get('batches_per_sec')
        return flops / rate if flops and rate else None


# ----------------------------------------------------------------------------- settings
def parse_args(argv: Optional[Sequence[str]] = None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--smoke', action='store_true', help='tiny model on the CPU, fp32, 1 + 2 steps')
    parser.add_argument('--batch-size', type=int, help='sequences per GPU and step (default 4; smoke 2)')
    parser.add_argument('--seq-len', type=int, help='tokens per sequence (default 4096; smoke 64)')
    parser.add_argument('--steps', type=int, help='measured steps, SpeedMonitor\'s window (default 20; smoke 2)')
    parser.add_argument('--warmup', type=int, help='steps before the window, at least 1 (default 5; smoke 1)')
    parser.add_argument('--gpus', type=int, default=1, help='ranks; > 1 launches `composer -n N` with FSDP2')
    parser.add_argument('--precision', choices=['amp_bf16', 'fp32'], help='default amp_bf16; smoke fp32')
    parser.add_argument('--peak-tflops', type=float, help='peak FLOP/s per device for MFU (default: SpeedMonitor\'s)')
    parser.add_argument('--override', action='append', default=[], metavar='KEY=VALUE',
                        help='a run-config override for every run (repeatable)')
    parser.add_argument('--out', type=Path, help=f'markdown table (default {DEFAULT_OUT.relative_to(REPO_ROOT)}; '
                                                 'a .json goes next to it)')
    args = parser.parse_args(argv)
    smoke = args.smoke
    settings = Settings(
        batch_size=args.batch_size or (2 if smoke else 4),
        seq_len=args.seq_len or (64 if smoke else 4096),
        steps=args.steps or (2 if smoke else 20),
        warmup=args.warmup if args.warmup is not None else (1 if smoke else 5),
        gpus=args.gpus,
        precision=args.precision or ('fp32' if smoke else 'amp_bf16'),
        peak_tflops=args.peak_tflops,
        source=dict(SMOKE_SOURCE if smoke else SOURCE_1B),
        target=dict(SMOKE_TARGET if smoke else TARGET_1B),
        overrides=tuple(args.override),
        out=args.out or (SMOKE_OUT if smoke else DEFAULT_OUT),
        smoke=smoke,
    )
    if min(settings.batch_size, settings.seq_len, settings.steps, settings.warmup, settings.gpus) < 1:
        parser.error('--batch-size, --seq-len, --steps, --warmup and --gpus must be >= 1 '
                     '(the first batch opens SpeedMonitor\'s window)')
    return settings


# ----------------------------------------------------------------------------- inputs of the runs
def model_fields(settings: Settings, model: str) -> dict[str, Any]:
    """LlamaConfig fields of the source, or of the target shape (head_dim kept, as pruning keeps it)."""
    source = settings.source
    fields = {**source, **BYTE_LEVEL_IDS, 'max_position_embeddings': max(4096, settings.seq_len),
              'head_dim': source['hidden_size'] // source['num_attention_heads']}
    if model == 'target':
        target = dict(settings.target)
        fields.update(num_hidden_layers=target.pop('num_layers'), **target)
    return fields


def write_model_config(folder: Path, fields: dict[str, Any]) -> Path:
    """A ``config.json`` only (``model.pretrained=false`` initialises the weights)."""
    from transformers import LlamaConfig
    LlamaConfig(**fields).save_pretrained(folder)
    return folder


def count_model_params(fields: dict[str, Any]) -> int:
    from transformers import LlamaConfig

    from composer_plugins.pruning.shapes import ModelShape, count_params
    return count_params(ModelShape.from_hf_config(LlamaConfig(**fields)))


def write_corpus(folder: Path, settings: Settings) -> Path:
    """Byte-level MDS rows of standard-library source: one row per sequence of the run, no repeats."""
    from composer_plugins.tools.demo.python_corpus import build_python_corpus_shards
    rows = settings.batch_size * settings.gpus * settings.batches
    return build_python_corpus_shards(folder, seq_len=settings.seq_len, train_rows=rows, eval_rows=1)


def run_overrides(arm: Arm, settings: Settings, data_dir: Path, model_dir: Path, run_dir: Path) -> list[str]:
    """The ``key=value`` overrides that turn ``arm.yaml`` into the measured run."""
    speed = f'window_size: {settings.steps}'
    if settings.peak_tflops:
        speed += f', gpu_flops_available: {int(settings.peak_tflops * 1e12)}'
    overrides = [
        f'variables.data_dir={data_dir}', f'variables.run_dir={run_dir}', f'variables.max_seq_len={settings.seq_len}',
        f'model.source={model_dir}', 'model.pretrained=false', f'run_name=gpu-throughput-{arm.kind}',
        f'precision={settings.precision}', f'max_duration={settings.batches}ba',
        f'global_train_batch_size={settings.batch_size * settings.gpus}',
        f'device_train_microbatch_size={settings.batch_size}',
        'eval_loader=null', 'eval_interval=1', 'save_folder=null', f'console_log_interval={settings.batches}ba',
        f'loggers.jsonl.path={run_dir / "metrics.jsonl"}', f'callbacks.speed_monitor={{{speed}}}',
    ]
    if torch.cuda.is_available():  # MemoryMonitor reads CUDA's allocator only
        overrides += ['callbacks.memory_monitor={}']
    if arm.yaml == 'tiny.yaml':  # the same weights' optimizer as prune_tiny.yaml
        overrides += ['optimizer.name=adamw', 'scheduler.name=constant_with_warmup', 'scheduler.t_warmup=0ba',
                      'scheduler.alpha_f=null']
    else:
        source = model_fields(settings, 'source')  # prune_tiny.yaml's config_overrides would resize the source
        overrides += [f'model.config_overrides.{key}={source[key]}' for key in ('num_hidden_layers',
                                                                                  'num_attention_heads')]
        overrides += [f'model.pruning.target.{key}={value}' for key, value in settings.target.items()]
        overrides += ['callbacks.mask_learning.init=dense', 'callbacks.mask_learning.settle=0ba']
    if settings.gpus > 1:
        overrides += ['fsdp_config.mixed_precision=FULL']
    return overrides + list(settings.overrides)


# ----------------------------------------------------------------------------- running
class RunFailed(RuntimeError):
    """A launched run exited with an error (its log says why, out of memory for example)."""


def free_cuda_memory() -> None:
    """What the last run left allocated (its Trainer, or an out-of-memory error's frames) goes back to CUDA."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def train_in_process(yaml: Path, overrides: list[str]) -> None:
    """``train_entry.run`` in this process, CUDA's peak memory reset first; the Trainer is closed after."""
    from composer_plugins.config.load import load_run_config
    from composer_plugins.train_entry import run

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    run(load_run_config(str(yaml), overrides)).close()


def train_launched(yaml: Path, overrides: list[str], gpus: int, log_path: Path) -> None:
    """``composer -n gpus -m composer_plugins.train_entry YAML overrides``; the log goes to ``log_path``."""
    command = [sys.executable, '-m', 'composer.cli.launcher', '-n', str(gpus), '-m', TRAIN_MODULE,
               str(yaml), *overrides]
    with open(log_path, 'w') as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:
        text = log_path.read_text(errors='replace')
        log.error('the run\'s log ends:\n%s', '\n'.join(text.splitlines()[-30:]))
        raise RunFailed('out of memory' if 'OutOfMemoryError' in text else f'exit {code} (log above)')


def read_final_metrics(path: Path, last_batch: int) -> dict[str, Optional[float]]:
    """The values of :data:`METRIC_KEYS` that the run logged at batch ``last_batch``."""
    from composer_plugins.loggers.jsonl_metrics import read_metrics

    latest: dict[str, float] = {}
    for record in read_metrics(path):
        if record['batch'] == last_batch:
            latest.update(record)
    return {name: latest.get(key) for name, key in METRIC_KEYS.items()}


def measure(arm: Arm, settings: Settings, work: Path, data_dir: Path) -> ArmResult:
    """Runs ``arm`` and reads its metrics; a failed run (out of memory, say) becomes the row's error."""
    from composer_plugins.bundled import bundled_yaml

    fields = model_fields(settings, arm.model)
    model_dir = write_model_config(work / f'model-{arm.model}', fields)
    run_dir = work / f'run-{arm.kind}'
    result = ArmResult(arm.kind, arm.label, fields, count_model_params(fields))
    overrides = run_overrides(arm, settings, data_dir, model_dir, run_dir)
    log.info('%s: %s, %s parameters', arm.kind, arm.yaml, f'{result.params:,}')
    started = time.perf_counter()
    try:
        if settings.gpus == 1:
            train_in_process(bundled_yaml(arm.yaml), overrides)
        else:
            train_launched(bundled_yaml(arm.yaml), overrides, settings.gpus, work / f'{arm.kind}.log')
    except (torch.OutOfMemoryError, RunFailed) as err:  # an error row; the other runs still run
        result.error = f'{type(err).__name__}: {(str(err).splitlines() or [""])[0][:160]}'
        log.error('%s failed: %s', arm.kind, result.error)
        return result
    finally:
        free_cuda_memory()
    result.metrics = read_final_metrics(run_dir / 'metrics.jsonl', settings.batches)
    if result.get('tokens_per_sec') is None:
        result.error = f'SpeedMonitor logged no throughput at batch {settings.batches}'
    log.info('%s: %.1f s in all; %s tokens/s', arm.kind, time.perf_counter() - started, result.get('tokens_per_sec'))
    return result


def run_benchmark(settings: Settings) -> list[ArmResult]:
    """The three runs, one after the other, in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix='gpu-throughput-') as tmp:
        work = Path(tmp)
        data_dir = write_corpus(work / 'data', settings)
        return [measure(arm, settings, work, data_dir) for arm in ARMS]


# ----------------------------------------------------------------------------- output
def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f'CPU ({platform.processor() or platform.machine()}, torch threads: {torch.get_num_threads()})'


def _fmt(value: Optional[float], spec: str) -> str:
    return 'n/a' if value is None else format(value, spec)


def _fmt_small(value: Optional[float]) -> str:
    """One decimal for GPU-sized numbers, three significant digits for the smoke run's tiny ones."""
    return 'n/a' if value is None else f'{value:,.1f}' if abs(value) >= 10 else f'{value:.3g}'


def _scaled(value: Optional[float], scale: float) -> Optional[float]:
    return None if value is None else value / scale


def render_markdown(results: list[ArmResult], settings: Settings, command: str) -> str:
    """The results table, preceded by the command and what was run."""
    by_kind = {r.kind: r for r in results}
    plain_rate = by_kind['plain'].get('tokens_per_sec')
    smoke_note = '**CPU smoke run: a tiny model, to check the script. These are not GPU numbers.**'
    lines = [smoke_note, ''] if settings.smoke else []
    lines += [
        f'Command: `{command}`', '',
        f'Device: {device_name()} x {settings.gpus}; precision {settings.precision}; '
        f'{"FSDP2 (mixed_precision FULL)" if settings.gpus > 1 else "one process, no FSDP"}; '
        f'batch {settings.batch_size} x {settings.seq_len} tokens per device; {settings.warmup} warm-up + '
        f'{settings.steps} steps (SpeedMonitor window); runs of composer_plugins.train_entry '
        '(tiny.yaml, prune_tiny.yaml); every number is a metric the run logged.', '',
        '| step | params (M) | step time (s) | tokens/s | tokens/s per device | vs plain | '
        'TFLOP/s per device | MFU | peak memory (GB) |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for r in results:
        if r.error:
            lines.append(f'| {r.label} | {_fmt_small(r.params / 1e6)} | {r.error} | | | | | | |')
            continue
        rate = r.get('tokens_per_sec')
        ratio = rate / plain_rate if rate and plain_rate else None
        lines.append(
            f'| {r.label} | {_fmt_small(r.params / 1e6)} | {_fmt(r.step_time_s, ".4f")} | {_fmt(rate, ",.0f")} | '
            f'{_fmt(r.get("device_tokens_per_sec"), ",.0f")} | {_fmt(ratio, ".3f")} | '
            f'{_fmt_small(_scaled(r.get("device_flops_per_sec"), 1e12))} | {_fmt(r.get("mfu"), ".1%")} | '
            f'{_fmt(r.get("peak_memory_gb"), ".1f")} |')
    lambda1 = by_kind['pruning'].get('lambda1_layer')
    if lambda1 is not None:
        lines += ['', f'Lagrange multiplier l0/lambda1/layer at the last batch of the pruning run: {lambda1:.4g} '
                      f'({"moved" if lambda1 else "**never moved**: the pruner got no gradients"}).']
    return '\n'.join(lines) + '\n'


def summary_json(results: list[ArmResult], settings: Settings, command: str) -> dict[str, Any]:
    data = dataclasses.asdict(settings)
    data['out'] = str(settings.out)
    return {
        'command': command, 'device': device_name(), 'settings': data, 'metric_keys': METRIC_KEYS,
        'results': [{**dataclasses.asdict(r), 'step_time_s': r.step_time_s, 'flops_per_batch': r.flops_per_batch}
                    for r in results],
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    settings = parse_args(argv)
    os.environ.setdefault('WANDB_MODE', 'offline')
    if settings.smoke:
        torch.set_num_threads(1)  # the tiny model gains nothing from more, and a shared CPU makes 2 threads crawl
    started = time.perf_counter()
    results = run_benchmark(settings)
    command = ' '.join(['PYTHONPATH=. python benchmarks/gpu_throughput.py', *(sys.argv[1:] if argv is None else argv)])
    markdown = render_markdown(results, settings, command)
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    settings.out.write_text(markdown)
    settings.out.with_suffix('.json').write_text(json.dumps(summary_json(results, settings, command), indent=2) + '\n')
    sys.stdout.write(markdown)
    sys.stdout.flush()
    log.info('wrote %s (and .json) in %.1f s', settings.out, time.perf_counter() - started)
    return 1 if any(r.error for r in results) else 0


if __name__ == '__main__':
    sys.exit(main())
