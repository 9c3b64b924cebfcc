"""Measure the peak RSS of real CPU training runs, to hold the memory formula against.

Two kinds of run, both ``python train.py`` subprocesses on byte-level Python source at
4 x 256 tokens, fp32, a few steps, with evaluation and checkpoint saving switched off
(the formula covers training steps): continued pre-training (``yamls/tiny.yaml``, two
microbatches of 2) and pruning (``yamls/prune_tiny.yaml``, every mask type but ``head``).
The model is SmolLM2-135M-shaped (hidden 576, 9 heads / 3 KV, FFN 1536, vocabulary
49152, tied embeddings) with fewer layers, initialised from a ``config.json``
(``model.pretrained=false``), so no weights are needed.

The peak RSS is the child's ``VmHWM`` (the kernel's high-water mark of its resident set
since its ``exec``), which the child writes to a file when it exits. Not ``ru_maxrss`` from
``os.wait4``: Linux carries the forking parent's resident set over into the child's
``ru_maxrss`` at ``exec``, so a caller that already holds gigabytes (a test session that
loaded SmolLM2 before) made every measurement read as the caller's size.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from composer_plugins.errors import ShearError

log = logging.getLogger(__name__)

TRAIN_MODULE = 'composer_plugins.train_entry'
SEQ_LEN = 256
BATCHES = 3

SMOLLM2_LIKE = dict(
    vocab_size=49152, hidden_size=576, intermediate_size=1536, num_attention_heads=9, num_key_value_heads=3,
    tie_word_embeddings=True, max_position_embeddings=2048, rope_theta=100000.0, rms_norm_eps=1e-5,
    bos_token_id=None, eos_token_id=256, pad_token_id=257,
)
"""SmolLM2-135M's config fields (DESIGN.md), with the byte-level tokenizer's special ids."""

_COMMON = ('global_train_batch_size=4', f'max_duration={BATCHES}ba', 'eval_loader=null', 'save_folder=null',
           'eval_interval=1000ba', 'model.pretrained=false', f'variables.max_seq_len={SEQ_LEN}')


@dataclass(frozen=True)
class RunCase:
    """One measured training run.

    Attributes:
        name: short label (``continue`` or ``prune``).
        yaml: a bundled run YAML (:func:`~composer_plugins.bundled.bundled_yaml`).
        overrides: its overrides, without the data / model / run folders.
    """
    name: str
    yaml: str
    overrides: tuple[str, ...]

    def all_overrides(self, data_dir: Path, model_dir: Path, run_dir: Path) -> list[str]:
        return [f'variables.data_dir={data_dir}', f'model.source={model_dir}', f'variables.run_dir={run_dir}',
                *_COMMON, *self.overrides]


def continue_case(layers: int) -> RunCase:
    """Continued pre-training of a ``layers``-layer SmolLM2-shaped model, 2 microbatches of 2."""
    return RunCase('continue', 'tiny.yaml', (
        'device_train_microbatch_size=2', f'model.config_overrides.num_hidden_layers={layers}',
    ))


def distill_case(layers: int, teacher_dir: Path) -> RunCase:
    """:func:`continue_case` distilling from a SmolLM2-like teacher (``alpha`` 0.5)."""
    base = continue_case(layers)
    return RunCase('distill', base.yaml, (*base.overrides, f'distillation={{teacher: {teacher_dir}, alpha: 0.5}}'))


def prune_case(layers: int) -> RunCase:
    """Pruning a ``layers``-layer SmolLM2-shaped model to ``layers - 2`` layers, 6 / 2 heads, 448, FFN 1280."""
    return RunCase('prune', 'prune_tiny.yaml', (
        'device_train_microbatch_size=4',
        f'model.config_overrides.num_hidden_layers={layers}', 'model.config_overrides.num_attention_heads=9',
        f'model.pruning.target.num_layers={layers - 2}', 'model.pruning.target.num_attention_heads=6',
        'model.pruning.target.num_key_value_heads=2', 'model.pruning.target.hidden_size=448',
        'model.pruning.target.intermediate_size=1280', 'model.pruning.mask_types=[layer,kv_group,intermediate,hidden]',
    ))


@dataclass(frozen=True)
class Measurement:
    """Peak resident set of one child process.

    Attributes:
        peak_rss: bytes (``VmHWM``; 0 when a failed run did not report it).
        seconds: wall-clock time of the child.
        returncode: its exit status.
        log_tail: the end of its combined stdout / stderr.
    """
    peak_rss: int
    seconds: float
    returncode: int
    log_tail: str


def write_model_config(out_dir: Path, num_hidden_layers: int) -> Path:
    """A Llama ``config.json`` of the SmolLM2-like shape with ``num_hidden_layers`` layers (no weights)."""
    from transformers import LlamaConfig
    out_dir.mkdir(parents=True, exist_ok=True)
    LlamaConfig(num_hidden_layers=num_hidden_layers, **SMOLLM2_LIKE).save_pretrained(out_dir)
    return out_dir


def write_teacher(out_dir: Path, num_hidden_layers: int) -> Path:
    """A SmolLM2-like model with ``num_hidden_layers`` layers and random weights, as an HF folder."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    if not (out_dir / 'model.safetensors').is_file():
        torch.manual_seed(0)
        config = LlamaConfig(num_hidden_layers=num_hidden_layers, **SMOLLM2_LIKE)
        AutoModelForCausalLM.from_config(config).save_pretrained(out_dir)
    return out_dir


def write_corpus(out_dir: Path) -> Path:
    """Byte-level MDS shards of standard-library source, rows of :data:`SEQ_LEN` tokens."""
    from composer_plugins.tools.demo.python_corpus import build_python_corpus_shards
    return build_python_corpus_shards(out_dir, seq_len=SEQ_LEN, train_rows=64, eval_rows=8)


# Runs a Python module (argv[2], its arguments argv[3:]) as __main__ and writes its VmHWM (kB) to argv[1] at exit.
_PEAK_REPORTER = """
import atexit, runpy, sys
peak_file = sys.argv.pop(1)
def report():
    with open('/proc/self/status') as status:
        kilobytes = next(line.split()[1] for line in status if line.startswith('VmHWM:'))
    with open(peak_file, 'w') as out:
        out.write(kilobytes)
atexit.register(report)
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)
"""


def train_command(case: RunCase, data_dir: Path, model_dir: Path, run_dir: Path) -> list[str]:
    """``composer_plugins.train_entry YAML overrides...`` for ``case`` (the module and its arguments)."""
    from composer_plugins.bundled import bundled_yaml
    return [TRAIN_MODULE, str(bundled_yaml(case.yaml)), *case.all_overrides(data_dir, model_dir, run_dir)]


def measure_peak_rss(module_and_args: Sequence[str], env: Optional[dict[str, str]] = None,
                     timeout: float = 600.0) -> Measurement:
    """Run a Python module (``python -m``) to completion and return its peak RSS (``VmHWM`` at exit).

    Output goes to a temporary file (no pipes to drain); the child is killed after ``timeout`` seconds.

    Raises:
        ShearError: The child exited without reporting its peak (killed, or ``os._exit``).
    """
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / 'vmhwm_kb'
        command = [sys.executable, '-c', _PEAK_REPORTER, str(peak_file), *module_and_args]
        with open(Path(tmp) / 'log', 'w+b') as out:
            start = time.perf_counter()
            proc = subprocess.Popen(command, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            seconds = time.perf_counter() - start
            out.seek(0)
            tail = out.read().decode('utf-8', errors='replace')[-6000:]
        if not peak_file.is_file():
            if proc.returncode == 0:
                raise ShearError(f'{module_and_args[0]} exited without reporting its peak memory:\n{tail}')
            return Measurement(0, seconds, proc.returncode, tail)
        peak = int(peak_file.read_text()) * 1024
    return Measurement(peak, seconds, proc.returncode, tail)


def child_env(tmp_dir: Path) -> dict[str, str]:
    """The environment of a measured run: a private TMPDIR, W&B offline."""
    env = dict(os.environ)
    env['TMPDIR'] = str(tmp_dir)
    env.setdefault('WANDB_MODE', 'offline')
    env.setdefault('TOKENIZERS_PARALLELISM', 'false')
    return env


@dataclass(frozen=True)
class Comparison:
    """Estimate and measurement of one case."""
    case: RunCase
    layers: int
    estimate: int
    measurement: Measurement

    @property
    def ratio(self) -> float:
        """estimate / measured."""
        return self.estimate / self.measurement.peak_rss

    @property
    def relative_error(self) -> float:
        """``|estimate - measured| / measured``."""
        return abs(self.estimate - self.measurement.peak_rss) / self.measurement.peak_rss


def compare(case: RunCase, layers: int, work_dir: Path, data_dir: Path, timeout: float = 600.0) -> Comparison:
    """Plan ``case`` with ``--device cpu``, run it, and return both numbers.

    Raises:
        ShearError: if the training run fails (with the end of its log).
    """
    from composer_plugins.bundled import bundled_yaml
    from composer_plugins.tools.planning.memory import estimate_memory
    from composer_plugins.tools.planning.run_inputs import plan_run

    model_dir = write_model_config(work_dir / f'model-{layers}l', layers)
    run_dir = work_dir / f'run-{case.name}-{layers}l'
    overrides = case.all_overrides(data_dir, model_dir, run_dir)
    estimate = estimate_memory(plan_run(str(bundled_yaml(case.yaml)), overrides, device='cpu').inputs).total
    tmp = work_dir / 'tmp'
    tmp.mkdir(exist_ok=True)
    measurement = measure_peak_rss(train_command(case, data_dir, model_dir, run_dir), child_env(tmp), timeout)
    if measurement.returncode != 0:
        raise ShearError(f'{case.name} run failed ({measurement.returncode}):\n{measurement.log_tail}')
    log.info('%s (%d layers): estimate %.3f GiB, measured %.3f GiB in %.0f s', case.name, layers,
             estimate / 2**30, measurement.peak_rss / 2**30, measurement.seconds)
    return Comparison(case, layers, estimate, measurement)
