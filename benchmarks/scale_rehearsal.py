"""The paper presets at their real size, on CPU: what breaks or blows up only at 7B / 8B.

For each preset (``yamls/presets/llama2_7b_to_1.3b.yaml``, ``llama2_7b_to_2.7b.yaml``,
``llama3.1_8b_to_4b.yaml``), in its own process so that one preset's memory does not count in the
next:

1. **build** the source at its real config (``KNOWN_SHAPES``: Llama-2-7B, Llama-3.1-8B) with random
   bfloat16 weights (uniform, std 0.02; norms 1);
2. **attach** the pruner with the preset's target and mask types (``ShearCausalLM``), and train one
   batch with a real Composer ``Trainer`` and the preset's own ``mask_learning`` and ``lagrangian``
   callbacks: **importance** scores on ``--calib-rows`` rows at fit start (the masks start as the
   one-shot masks), then one **step** on one sequence of ``--seq-len`` tokens: sampled gates, the
   Lagrangian term, backward, and both callbacks' optimizer steps (and the settle phase's projection);
3. **masked forward**: the deterministic masks applied to the source, on that sequence;
4. **export** with the deterministic masks (``export_pruned_model(..., consume_source=True)``), and the
   exported model's forward on the same sequence, compared with the masked one.

Each step's wall time and peak RSS (``VmHWM``, reset before each step through ``/proc/self/clear_refs``)
go into a markdown table, and ``shear plan``'s figures for 8 x A100-80GB and 8 x H100-80GB sit beside
what the rehearsal can check of them: the parameter and mask counts, and the export's host memory.

How it fits a 24 GiB, 2-core machine:

* the source is bfloat16, 2 bytes a parameter (13.5 GB for Llama-2-7B, 16.1 GB for Llama-3.1-8B), filled
  in place: no float32 copy is ever made (a real run's fp32 master weights are 4 bytes, sharded by FSDP2);
* the weights are frozen: the step computes the gradients of the log-alphas and the multipliers, which
  flow back through every frozen layer; the weights' optimizer holds only the final norm. AdamW on 7B
  parameters would need 4 x 4 x 7B = 108 GB; what a weight step costs is ``shear plan``'s parameters,
  gradients and optimizer rows, which are exact counts;
* one sequence of 64 tokens: activations are a few MB;
* the export frees each source layer once it is sliced: its peak is the source plus the exported
  embeddings, not two models.

    PYTHONPATH=. python benchmarks/scale_rehearsal.py [--presets llama2_7b_to_1.3b ...] [--out DIR]

Writes ``DIR/scale_rehearsal.md`` and ``.json`` (default ``runs/scale_rehearsal``).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]
PRESETS = {
    'llama2_7b_to_1.3b': ('yamls/presets/llama2_7b_to_1.3b.yaml', 'llama2-7b'),
    'llama2_7b_to_2.7b': ('yamls/presets/llama2_7b_to_2.7b.yaml', 'llama2-7b'),
    'llama3.1_8b_to_4b': ('yamls/presets/llama3.1_8b_to_4b.yaml', 'llama3.1-8b'),
}
ROPE_THETA = {'llama2-7b': 10000.0, 'llama3.1-8b': 500000.0}
INIT_STD = 0.02
GPU_PLANS = {'8 x A100-80GB': 80.0, '8 x H100-80GB': 80.0}
"""The GPUs the plan is made for: both have 80 GB, so one plan serves both (the fit is the same)."""
LOGIT_BOUND = 0.05
"""Bound on the relative RMS difference of the exported model's logits from the masked model's, in bfloat16.

The masked model multiplies every masked activation by its mask value in bfloat16; the export folds the
same values into o_proj and down_proj in float32 and rounds each weight once. Either rounds each product
to 8 significant bits (relative 2^-9 = 0.002), so the two differ by a few such roundings per layer, added
over 24 to 32 layers like a random walk: about sqrt(30 x a few) x 0.002, i.e. 1 to 3 per cent. A wrong
slice or a missed scale moves the logits by tens of per cent (the tests check the export exactly, in float64)."""

log = logging.getLogger('benchmarks.scale_rehearsal')


@dataclass
class Step:
    """One step of a rehearsal: wall time and peak RSS (GiB) while it ran."""
    name: str
    seconds: float
    peak_rss_gib: float


@dataclass
class Rehearsal:
    """What one preset's rehearsal measured."""
    preset: str
    source: str
    source_params: int
    target_params: int
    exported_params: int
    log_alphas: int
    multipliers: int
    steps: list[Step] = field(default_factory=list)
    logit_rel_rms: float = math.nan
    top1_agreement: float = math.nan
    plan: dict[str, Any] = field(default_factory=dict)


# -- memory ---------------------------------------------------------------------------------------
def reset_peak_rss() -> None:
    """Resets the kernel's peak-RSS mark of this process (``VmHWM``)."""
    with open('/proc/self/clear_refs', 'w', encoding='ascii') as f:
        f.write('5')


def peak_rss_gib() -> float:
    with open('/proc/self/status', encoding='ascii') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024 / 2 ** 30
    raise RuntimeError('no VmHWM in /proc/self/status')


class StepClock:
    """Times named steps and records each one's peak RSS."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self._name: Optional[str] = None
        self._started = 0.0

    def start(self, name: str) -> None:
        self.stop()
        reset_peak_rss()
        self._name, self._started = name, time.perf_counter()

    def stop(self) -> None:
        if self._name is not None:
            self.steps.append(Step(self._name, time.perf_counter() - self._started, peak_rss_gib()))
            log.info('%s: %.1f s, peak RSS %.2f GiB', self._name, self.steps[-1].seconds, self.steps[-1].peak_rss_gib)
            self._name = None

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        self.start(name)
        try:
            return fn()
        finally:
            self.stop()


# -- one preset -----------------------------------------------------------------------------------
def build_source(shape_name: str, layers: Optional[int], seed: int) -> Any:
    """The source at its real config (``layers`` overrides the depth, for a quick trial), random bf16 weights."""
    import torch
    from torch import nn
    from transformers import LlamaConfig

    from composer_plugins.models.loading import empty_causal_lm
    from composer_plugins.models.source_shape import KNOWN_SHAPES

    fields = {k: v for k, v in KNOWN_SHAPES[shape_name].items() if k != 'model_type'}
    if layers is not None:
        fields['num_hidden_layers'] = layers
    config = LlamaConfig(**fields, rope_theta=ROPE_THETA[shape_name], max_position_embeddings=4096,
                         torch_dtype=torch.bfloat16)
    config._attn_implementation = 'sdpa'
    model = empty_causal_lm(config)
    generator = torch.Generator().manual_seed(seed)
    bound = INIT_STD * math.sqrt(3.0)  # uniform on [-b, b] has std b / sqrt(3)
    for module in model.modules():
        for name, param in list(module.named_parameters(recurse=False)):
            value = torch.empty(param.shape, dtype=torch.bfloat16)
            if param.ndim == 1:
                value.fill_(1.0)
            else:
                value.uniform_(-bound, bound, generator=generator)
            setattr(module, name, nn.Parameter(value, requires_grad=False))
    return model


def write_calibration(out: Path, vocab_size: int, rows: int, seq_len: int, seed: int) -> Path:
    """``rows`` random token rows as MDS shards in ``out/train`` (what ``init: importance`` reads)."""
    import numpy as np

    from data_prep.mds import write_token_rows

    rng = np.random.default_rng(seed)
    write_token_rows(out / 'train', (rng.integers(0, vocab_size, seq_len) for _ in range(rows)), vocab_size)
    return out


def rehearse(preset: str, layers: Optional[int], seq_len: int, calib_rows: int, seed: int) -> Rehearsal:
    import numpy as np
    import torch
    from composer import Trainer
    from composer.core import Callback

    from composer_plugins.callbacks.lagrangian import LagrangianAscent
    from composer_plugins.callbacks.mask_learning import MaskLearning
    from composer_plugins.config.typed import to_dict
    from composer_plugins.models.causal_lm import ShearCausalLM
    from composer_plugins.models.export import export_pruned_model
    from composer_plugins.pruning.shapes import count_params
    from composer_plugins.tools.planning.memory import estimate_memory, export_host_bytes
    from composer_plugins.tools.planning.run_inputs import plan_run

    yaml_path, shape_name = PRESETS[preset]
    overrides = [] if layers is None else [f'model.pruning.target.num_layers={min(layers - 1, 28)}']
    planned = plan_run(str(REPO / yaml_path), overrides, gpus=8, source_shape=shape_name)
    clock = StepClock()
    model = clock.run('build source (bf16, random)', lambda: build_source(shape_name, layers, seed))
    vocab_size = model.config.vocab_size

    with tempfile.TemporaryDirectory(prefix='scale-rehearsal-') as tmp:
        calib = write_calibration(Path(tmp) / 'calib', vocab_size, calib_rows, seq_len, seed)
        pruning = to_dict(planned.config.model.pruning)
        shear = ShearCausalLM(shape_name, hf_model=model, pruning=pruning)
        masks_cfg = {**to_dict(planned.config.callbacks['mask_learning']),
                     'calibration': {'data': str(calib), 'rows': calib_rows, 'batch_size': 1}}
        lagrangian_cfg = to_dict(planned.config.callbacks['lagrangian'])
        final_norm = shear.model.model.norm.weight
        final_norm.requires_grad_(True)  # the weights' optimizer needs a parameter; every other weight is frozen

        class Phases(Callback):
            """Starts the clock's steps at the Trainer's events: importance at fit start, then the step."""

            def fit_start(self, state: Any, logger: Any) -> None:
                clock.start('importance + mask init (fit start)')

            def batch_start(self, state: Any, logger: Any) -> None:
                clock.start('train step (gates, Lagrangian, backward, mask steps)')

            def batch_end(self, state: Any, logger: Any) -> None:
                clock.stop()

        ids = torch.from_numpy(np.random.default_rng(seed + 1).integers(0, vocab_size, seq_len))
        sample = {'input_ids': ids, 'labels': ids.clone()}
        loader = torch.utils.data.DataLoader([sample], batch_size=1)
        trainer = Trainer(model=shear, train_dataloader=loader, max_duration='1ba',
                          optimizers=torch.optim.SGD([final_norm], lr=0.0),
                          callbacks=[Phases(), MaskLearning(**masks_cfg), LagrangianAscent(**lagrangian_cfg)],
                          device='cpu', precision='fp32', progress_bar=False, log_to_console=False, loggers=[],
                          seed=seed)
        trainer.fit()
        trainer.close()

    pruner = shear.pruner
    masks = pruner.l0_masks.deterministic()

    def masked_logits() -> torch.Tensor:
        shear.eval()
        shear.mask_applier.set_masks(masks)
        with torch.no_grad():
            return shear.model(input_ids=ids[None], use_cache=False).logits.float()
    expected = clock.run('masked forward (deterministic masks)', masked_logits)
    del trainer
    exported = clock.run('export (consumes the source)', lambda: export_pruned_model(
        shear.model, masks, pruner.source, pruner.target, consume_source=True))

    def exported_logits() -> torch.Tensor:
        with torch.no_grad():
            return exported(input_ids=ids[None], use_cache=False).logits.float()
    actual = clock.run('exported forward', exported_logits)

    rel_rms = float((actual - expected).norm() / expected.norm())
    top1 = float((actual.argmax(-1) == expected.argmax(-1)).float().mean())
    result = Rehearsal(
        preset=preset, source=shape_name + ('' if layers is None else f' ({layers} layers)'),
        source_params=count_params(pruner.source), target_params=count_params(pruner.target),
        exported_params=sum(p.numel() for p in exported.parameters()),
        log_alphas=sum(p.numel() for p in pruner.l0_masks.parameters()),
        multipliers=sum(p.numel() for p in pruner.lagrangian.parameters()),
        steps=clock.steps, logit_rel_rms=rel_rms, top1_agreement=top1)
    breakdown = estimate_memory(planned.inputs)
    result.plan = {
        'source_params': count_params(planned.inputs.shape),
        'log_alphas': planned.inputs.masks.log_alphas,
        'multipliers': planned.inputs.masks.multipliers,
        'per_gpu_gib': breakdown.total / 2 ** 30,
        'masks_per_gpu_gib': breakdown.masks / 2 ** 30,
        'export_host_gib_bf16': export_host_bytes(planned.inputs.shape, pruner.target, 2) / 2 ** 30,
        'export_host_gib_fp32': export_host_bytes(planned.inputs.shape, pruner.target, 4) / 2 ** 30,
    }
    return result


# -- driver ---------------------------------------------------------------------------------------
def markdown(results: list[Rehearsal], seq_len: int, calib_rows: int) -> str:
    import torch

    lines = [f'torch {torch.__version__}, Python {platform.python_version()}, '
             f'{os.cpu_count()} cores; one sequence of {seq_len} tokens, {calib_rows} calibration rows, bf16.', '',
             '| preset | step | wall (s) | peak RSS (GiB) |', '|---|---|---:|---:|']
    for r in results:
        for step in r.steps:
            lines.append(f'| {r.preset} | {step.name} | {step.seconds:.1f} | {step.peak_rss_gib:.2f} |')
    lines += ['', f'| preset | source params | exported params (= target) | log-alphas | multipliers '
              f'| logits rel. RMS (bound {LOGIT_BOUND}) | top-1 agreement |', '|---|---:|---:|---:|---:|---:|---:|']
    for r in results:
        lines.append(f'| {r.preset} | {r.source_params:,} | {r.exported_params:,} ({r.target_params:,}) '
                     f'| {r.log_alphas:,} | {r.multipliers} | {r.logit_rel_rms:.4f} | {r.top1_agreement:.3f} |')
    lines += ['', '`shear plan` (8 GPUs of 80 GB: A100-80GB and H100-80GB plan alike) against the rehearsal:', '',
              '| preset | plan: params / log-alphas / multipliers | measured | plan: per GPU (GiB) '
              '| plan: masks per GPU (GiB) | plan: export host RAM, bf16 (GiB) | measured export peak RSS (GiB) |',
              '|---|---|---|---:|---:|---:|---:|']
    for r in results:
        p = r.plan
        export = next((s.peak_rss_gib for s in r.steps if s.name.startswith('export')), math.nan)
        lines.append(f'| {r.preset} | {p["source_params"]:,} / {p["log_alphas"]:,} / {p["multipliers"]} '
                     f'| {r.source_params:,} / {r.log_alphas:,} / {r.multipliers} | {p["per_gpu_gib"]:.1f} '
                     f'| {p["masks_per_gpu_gib"]:.3f} | {p["export_host_gib_bf16"]:.1f} | {export:.2f} |')
    return '\n'.join(lines) + '\n'


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--presets', nargs='+', default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument('--out', type=Path, default=Path('runs/scale_rehearsal'))
    parser.add_argument('--seq-len', type=int, default=64)
    parser.add_argument('--calib-rows', type=int, default=2)
    parser.add_argument('--layers', type=int, default=None, help='a shallower source, for a quick trial')
    parser.add_argument('--seed', type=int, default=17)
    parser.add_argument('--one', default=None, help=argparse.SUPPRESS)  # the child process: one preset to JSON
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')

    if args.one:
        result = rehearse(args.one, args.layers, args.seq_len, args.calib_rows, args.seed)
        print(json.dumps(asdict(result)))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for preset in args.presets:
        command = [sys.executable, __file__, '--one', preset, '--seq-len', str(args.seq_len),
                   '--calib-rows', str(args.calib_rows), '--seed', str(args.seed)]
        if args.layers is not None:
            command += ['--layers', str(args.layers)]
        log.info('== %s', preset)
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True,
                              env={**os.environ, 'PYTHONPATH': str(REPO)})
        data = json.loads(done.stdout.strip().splitlines()[-1])
        data['steps'] = [Step(**s) for s in data['steps']]
        results.append(Rehearsal(**data))
    table = markdown(results, args.seq_len, args.calib_rows)
    (args.out / 'scale_rehearsal.md').write_text(table)
    (args.out / 'scale_rehearsal.json').write_text(json.dumps([asdict(r) for r in results], indent=2) + '\n')
    print(table)
    bad = [r.preset for r in results if not r.logit_rel_rms <= LOGIT_BOUND]
    if bad:
        log.error('exported logits differ from the masked model by more than %s: %s', LOGIT_BOUND, bad)
        return 1
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
