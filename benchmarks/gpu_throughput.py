"""GPU training throughput and MFU: a plain step, a pruning step and an exported-model step.

Three kinds of training step, each measured on its own in one process, on one GPU with
FSDP2 (``torch.distributed.fsdp.fully_shard``, world size 1, NCCL), bf16 parameters
(``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)``, fp32 master weights and
AdamW state), SDPA attention, random token ids:

1. ``plain``: the Hugging Face ``LlamaForCausalLM`` of the source config, forward with
   labels (HF's cross entropy), backward, AdamW step.
2. ``pruning``: the same source wrapped as a real pruning run wraps it
   (:class:`~composer_plugins.models.causal_lm.ShearCausalLM` with ``model.pruning``: all
   mask types of a GQA model, sampled every step and applied by hooks), loss ``lm +
   lagrangian`` (paper eq. 3), backward, one AdamW with three parameter groups (weights
   ``lr``; log-alphas and multipliers ``LAG_LR`` without weight decay, the multipliers with
   ``maximize=True``: the same element-wise updates as the ``mask_learning`` and
   ``lagrangian`` callbacks' own Adam optimizers), the step and log-alpha clamp those
   callbacks do, and ``pruning_monitor``'s metric reads. FSDP2
   wraps it as Composer does: every decoder layer, the HF model and the pruner are units;
   ``ShearCausalLM`` itself is not.
3. ``exported``: the HF model that ``export_pruned_model`` makes from the pruning model's
   deterministic masks (the target shape; what users continue to train), plain step.

Default source, "1.1B" (``count_params``: 1,105,815,552 parameters, untied):
``LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5504,
num_hidden_layers=22, num_attention_heads=16, num_key_value_heads=4)`` (head_dim 128).
Target, the Sheared-LLaMA-style halving of every dimension: 11 layers, 8 heads / 2 KV
heads, hidden 1024, FFN 2752 (187,390,976 parameters). Batch 4 x 4096 tokens, 5 warm-up
and 20 timed steps per kind. Measured on CPU: the pruning step saves about 13% more
activation memory than the plain step; the estimate for the default batch is about 95 GiB
peak for the pruning step (no activation checkpointing), under the 140 GB of an H200.

Command (one GPU; a minute or two, most of it building the 1.1B model on the CPU)::

    PYTHONPATH=. python benchmarks/gpu_throughput.py
    PYTHONPATH=. torchrun --nproc_per_node 1 benchmarks/gpu_throughput.py   # the same
    PYTHONPATH=. python benchmarks/gpu_throughput.py --smoke              # CPU, tiny, seconds

Options: ``--batch-size``, ``--seq-len``, ``--steps``, ``--warmup``, ``--activation-checkpointing``,
``--peak-tflops`` (needed where the GPU is not an A100 / H100 / H200), ``--dtype``, ``--out``
(default ``benchmarks/results/gpu_throughput.md``; a ``.json`` with every step time is
written next to it). A kind that runs out of memory gets an error row and the others run.

Columns of the table:

* ``params``: parameters of the model trained (``count_params``; the pruning row counts
  the source, the masks and multipliers are extra and tiny).
* ``step time``: median wall time of the timed steps, each ended by ``torch.cuda.synchronize``.
* ``tokens/s``: batch x seq / step time.
* ``vs plain``: tokens/s of the row / tokens/s of the plain step. Goal: pruning >= 0.85.
* ``TFLOP/s``: model FLOPs per second; ``MFU``: that over the GPU's peak dense bf16 FLOP/s
  (H100 SXM / H200 989, H100 PCIe 756, A100 312, or ``--peak-tflops``). Goal: plain >= 40%
  on H100/H200. Model FLOPs per token of training (forward + backward), PaLM (Chowdhery et
  al. 2022, appendix B)::

      6 * N + 12 * L * (n_heads * head_dim) * S

  with N the parameters of every matrix multiplication (all parameters except the input
  embedding; ``lm_head`` counts, tied or not), L layers, S the sequence length (attention
  counted without the causal half, as PaLM does). Activation recomputation is not counted
  (MFU, not HFU). The pruning row uses the source's FLOPs: the masked model computes at
  full size, so its MFU is directly comparable to the plain row's.
* ``peak memory``: ``torch.cuda.max_memory_allocated`` during that kind's steps.

For reference, the original LLM-Shearing code reports 1844 tokens/s per A100 for pruning
LLaMA2-7B (Xia et al. 2023, arXiv 2310.06694); a 7B source is not comparable with this
1.1B one in tokens/s, only in MFU (by the formula below, 1844 tokens/s at 7B and S = 4096
are about 85 TFLOP/s, 27% of an A100's 312).

``--smoke`` runs a tiny config (4 layers, hidden 64) on the CPU, fp32, world size 1 with
gloo and the same FSDP2 wrapping, 1 warm-up + 2 timed steps: it checks that the script
works, its numbers are not GPU numbers.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import logging
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
import torch.distributed as dist
import transformers
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
    CheckpointImpl, apply_activation_checkpointing, checkpoint_wrapper,
)
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from transformers import LlamaConfig

from composer_plugins.callbacks.pruning_monitor import PruningMonitor
from composer_plugins.models.causal_lm import ShearCausalLM
from composer_plugins.models.export import export_pruned_model
from composer_plugins.models.loading import load_causal_lm
from composer_plugins.pruning.shapes import ModelShape, count_non_embedding_params, count_params

log = logging.getLogger('bench.gpu_throughput')

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / 'benchmarks' / 'results' / 'gpu_throughput.md'
SMOKE_OUT = REPO_ROOT / 'benchmarks' / 'results' / 'gpu_throughput_smoke.md'

# LlamaConfig fields of the source model, and the pruning target (halve every dimension).
SOURCE_1B = dict(
    vocab_size=32000, hidden_size=2048, intermediate_size=5504, num_hidden_layers=22,
    num_attention_heads=16, num_key_value_heads=4, tie_word_embeddings=False,
)
TARGET_1B = dict(num_layers=11, num_attention_heads=8, num_key_value_heads=2, hidden_size=1024, intermediate_size=2752)
SMOKE_SOURCE = dict(
    vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
    num_attention_heads=8, num_key_value_heads=2, tie_word_embeddings=False,
)
SMOKE_TARGET = dict(num_layers=2, num_attention_heads=4, num_key_value_heads=1, hidden_size=32, intermediate_size=64)

# Peak dense bf16 TFLOP/s by device-name substring, first match wins (vendor data sheets).
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ('H100 PCIe', 756.0), ('H100', 989.0), ('H200', 989.0), ('GH200', 989.0), ('A100', 312.0),
)
LR = 1.0e-4       # weights
LAG_LR = 1.0      # log-alphas and Lagrange multipliers (the paper presets' lag_lr)
LOG_ALPHA_PARAMS = 'pruner.l0_masks.'  # substrings of ShearCausalLM's parameter names
MULTIPLIER_PARAMS = 'pruner.lagrangian.'
KINDS = ('plain', 'pruning', 'exported')
KIND_LABELS = {
    'plain': 'plain step (source, HF model)',
    'pruning': 'pruning step (source + masks + Lagrangian)',
    'exported': 'exported-model step (target shape)',
}


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Settings:
    """What one benchmark run measures and how."""
    batch_size: int
    seq_len: int
    steps: int
    warmup: int
    device: str                       # 'cuda' or 'cpu'
    dtype: str                        # 'bf16' or 'fp32': FSDP2 param dtype
    activation_checkpointing: bool
    peak_tflops: Optional[float]      # None: detect from the device name
    source: dict[str, Any]
    target: dict[str, int]
    out: Path
    smoke: bool
    seed: int = 0

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len


@dataclass
class StepResult:
    """Measurements of one kind of training step."""
    kind: str
    label: str
    shape: dict[str, Any]
    params: int
    flops_per_token: float
    tokens_per_step: int
    step_times_s: list[float] = field(default_factory=list)
    peak_memory_gib: Optional[float] = None
    error: Optional[str] = None
    mask_params_updated: Optional[bool] = None   # pruning only: did the optimizer change the log-alphas?

    @property
    def step_time_s(self) -> Optional[float]:
        return statistics.median(self.step_times_s) if self.step_times_s else None

    @property
    def tokens_per_s(self) -> Optional[float]:
        step = self.step_time_s
        return self.tokens_per_step / step if step else None

    @property
    def tflops_per_s(self) -> Optional[float]:
        rate = self.tokens_per_s
        return rate * self.flops_per_token / 1e12 if rate else None

    def mfu(self, peak_tflops: Optional[float]) -> Optional[float]:
        achieved = self.tflops_per_s
        return achieved / peak_tflops if achieved and peak_tflops else None

    def to_json(self, peak_tflops: Optional[float]) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.update(step_time_s=self.step_time_s, tokens_per_s=self.tokens_per_s,
                    tflops_per_s=self.tflops_per_s, mfu=self.mfu(peak_tflops))
        return data


@dataclass(frozen=True)
class Environment:
    """Where the numbers come from."""
    device_name: str
    peak_tflops: Optional[float]
    torch: str
    transformers: str
    python: str
    world_size: int
    backend: str


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f'expected an integer >= {minimum}, got {text}')
        return value
    return parse


def parse_args(argv: Optional[Sequence[str]] = None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--smoke', action='store_true',
                        help='tiny config on the CPU (gloo, fp32, 2 steps): checks the script, not the GPU')
    parser.add_argument('--batch-size', type=_count(1), default=None, help='sequences per step (default 4; smoke 2)')
    parser.add_argument('--seq-len', type=_count(1), default=None, help='tokens per sequence (default 4096; smoke 64)')
    parser.add_argument('--steps', type=_count(1), default=None, help='timed steps per kind (default 20; smoke 2)')
    parser.add_argument('--warmup', type=_count(0), default=None, help='untimed steps first (default 5; smoke 1)')
    parser.add_argument('--dtype', choices=['bf16', 'fp32'], default=None,
                        help='FSDP2 parameter dtype (default bf16 on GPU, fp32 for --smoke)')
    parser.add_argument('--activation-checkpointing', action='store_true', help='checkpoint every decoder layer')
    parser.add_argument('--peak-tflops', type=float, default=None,
                        help='peak dense FLOP/s of the device in TFLOP/s (default: detected for A100/H100/H200)')
    parser.add_argument('--out', type=Path, default=None,
                        help=f'markdown table (default {DEFAULT_OUT.relative_to(REPO_ROOT)}; '
                             f'smoke {SMOKE_OUT.relative_to(REPO_ROOT)}); JSON goes next to it')
    args = parser.parse_args(argv)

    smoke = args.smoke
    settings = Settings(
        batch_size=args.batch_size or (2 if smoke else 4),
        seq_len=args.seq_len or (64 if smoke else 4096),
        steps=args.steps or (2 if smoke else 20),
        warmup=args.warmup if args.warmup is not None else (1 if smoke else 5),
        device='cpu' if smoke else 'cuda',
        dtype=args.dtype or ('fp32' if smoke else 'bf16'),
        activation_checkpointing=args.activation_checkpointing,
        peak_tflops=args.peak_tflops,
        source=dict(SMOKE_SOURCE if smoke else SOURCE_1B),
        target=dict(SMOKE_TARGET if smoke else TARGET_1B),
        out=args.out or (SMOKE_OUT if smoke else DEFAULT_OUT),
        smoke=smoke,
    )
    if settings.device == 'cuda' and not torch.cuda.is_available():
        parser.error('no CUDA device: run on a GPU, or pass --smoke for the CPU check')
    return settings


# ----------------------------------------------------------------------------- shapes, FLOPs
def flops_per_token(shape: ModelShape, seq_len: int) -> float:
    """Training FLOPs per token: ``6 N + 12 L (n_heads head_dim) S`` (PaLM, App. B).

    ``N`` = parameters of every matmul = non-embedding parameters + the ``lm_head`` matrix
    (``V H``, also when tied: the output projection is computed either way); the input
    embedding is a lookup. ``12 L d S``: ``Q K^T`` and ``A V`` (2 FLOPs per multiply-add,
    ``S`` keys per query), times 3 for forward + backward, without halving for the mask.
    """
    matmul_params = count_non_embedding_params(shape) + shape.vocab_size * shape.hidden_size
    attention = 12 * shape.num_layers * shape.num_attention_heads * shape.head_dim * seq_len
    return float(6 * matmul_params + attention)


def detect_peak_tflops(settings: Settings) -> tuple[str, Optional[float]]:
    """Device name and its peak dense TFLOP/s (``--peak-tflops`` first; bf16 table for GPUs)."""
    if settings.device != 'cuda':
        return f'CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)', \
            settings.peak_tflops
    name = torch.cuda.get_device_name()
    if settings.peak_tflops is not None:
        return name, settings.peak_tflops
    if settings.dtype != 'bf16':
        log.warning('--dtype %s: no peak known, pass --peak-tflops for an MFU column', settings.dtype)
        return name, None
    for key, peak in PEAK_BF16_TFLOPS:
        if key in name:
            return name, peak
    log.warning('unknown GPU %r: pass --peak-tflops for an MFU column', name)
    return name, None


# ----------------------------------------------------------------------------- distributed
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def init_distributed(settings: Settings) -> DeviceMesh:
    """A world-size-1 process group (NCCL on GPU, gloo on CPU) and its 1-D device mesh.

    Under ``torchrun`` the launcher's environment is used; otherwise this process is rank 0.
    """
    if 'RANK' not in os.environ:
        os.environ.update(RANK='0', LOCAL_RANK='0', WORLD_SIZE='1', MASTER_ADDR='127.0.0.1',
                          MASTER_PORT=str(_free_port()))
    world_size = int(os.environ['WORLD_SIZE'])
    if world_size != 1:
        raise SystemExit(f'this benchmark measures one GPU; got WORLD_SIZE={world_size}')
    backend = 'nccl' if settings.device == 'cuda' else 'gloo'
    if settings.device == 'cuda':
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', '0')))
    dist.init_process_group(backend=backend)
    return init_device_mesh(settings.device, (world_size,))


# ----------------------------------------------------------------------------- models
def write_source_config(settings: Settings, folder: Path) -> Path:
    """The source ``LlamaConfig`` as an HF folder (what ``model.source`` points to in a run)."""
    config = LlamaConfig(**settings.source, max_position_embeddings=max(4096, settings.seq_len),
                         bos_token_id=None, eos_token_id=1, pad_token_id=0)
    config.save_pretrained(folder)
    return folder


def build_plain(config_dir: Path, seed: int) -> nn.Module:
    """``LlamaForCausalLM`` from the config, SDPA attention, fp32 on the CPU."""
    torch.manual_seed(seed)
    return load_causal_lm(str(config_dir), pretrained=False, attn_implementation='sdpa')


def build_pruning(config_dir: Path, settings: Settings) -> nn.Module:
    """``ShearCausalLM`` with ``model.pruning`` (every mask type of the source), as a run builds it."""
    torch.manual_seed(settings.seed)
    return ShearCausalLM(str(config_dir), pretrained=False, attn_implementation='sdpa', pruning={
        'target': settings.target,
    })


def export_target_model(pruning_model: nn.Module) -> nn.Module:
    """The exported HF model of the target shape (``export_pruned_model`` on deterministic masks)."""
    pruner = pruning_model.pruner
    with torch.no_grad():
        masks = pruner.l0_masks.deterministic()
    exported = export_pruned_model(pruning_model.model, masks, pruner.source, pruner.target)
    exported.config._attn_implementation = 'sdpa'
    return exported.train()


def is_pruning_model(module: nn.Module) -> bool:
    return getattr(module, 'pruner', None) is not None


def hf_model_of(module: nn.Module) -> nn.Module:
    """The HF causal LM inside ``module`` (``ShearCausalLM.model``, or ``module`` itself)."""
    return module.model if is_pruning_model(module) else module


def shard(module: nn.Module, settings: Settings, mesh: DeviceMesh) -> None:
    """Moves ``module`` to the device and applies FSDP2 the way Composer's policy does.

    Units: every decoder layer (checkpoint-wrapped first with ``--activation-checkpointing``),
    then the HF model; for a pruning model also the pruner. ``ShearCausalLM`` itself is not
    a unit (Composer's ``generate_composer_model_policy`` wraps a ComposerModel's children).
    """
    module.to(settings.device)
    hf_model = hf_model_of(module)
    layers = list(hf_model.get_decoder().layers)
    if settings.activation_checkpointing:
        layer_types = tuple({type(layer) for layer in layers})
        apply_activation_checkpointing(
            hf_model,
            checkpoint_wrapper_fn=lambda m: checkpoint_wrapper(m, checkpoint_impl=CheckpointImpl.NO_REENTRANT),
            check_fn=lambda m: isinstance(m, layer_types),
        )
    mp_policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
                 if settings.dtype == 'bf16' else MixedPrecisionPolicy())
    for layer in layers:  # the layers themselves, inside their checkpoint wrappers (as Composer does)
        fully_shard(layer, mesh=mesh, mp_policy=mp_policy)
    fully_shard(hf_model, mesh=mesh, mp_policy=mp_policy)
    if is_pruning_model(module):
        fully_shard(module.pruner, mesh=mesh, mp_policy=mp_policy)


def make_optimizer(module: nn.Module) -> torch.optim.Optimizer:
    """AdamW; for a pruning model three parameter groups that stand in for the callbacks' optimizers."""
    kwargs = dict(lr=LR, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    if not is_pruning_model(module):
        return torch.optim.AdamW(module.parameters(), **kwargs)
    groups: dict[str, list[nn.Parameter]] = {'weights': [], 'log_alpha': [], 'multipliers': []}
    for name, param in module.named_parameters():
        key = 'log_alpha' if LOG_ALPHA_PARAMS in name else 'multipliers' if MULTIPLIER_PARAMS in name else 'weights'
        groups[key].append(param)
    return torch.optim.AdamW([
        {'params': groups['weights']},
        {'params': groups['log_alpha'], 'lr': LAG_LR},
        {'params': groups['multipliers'], 'lr': LAG_LR, 'maximize': True},
    ], **kwargs)


# ----------------------------------------------------------------------------- steps
def random_batch(settings: Settings, vocab_size: int) -> dict[str, torch.Tensor]:
    """Random token ids, the keys a run's collator gives (ids, all-ones mask, labels)."""
    generator = torch.Generator().manual_seed(settings.seed)
    ids = torch.randint(0, vocab_size, (settings.batch_size, settings.seq_len), generator=generator)
    batch = {'input_ids': ids, 'attention_mask': torch.ones_like(ids), 'labels': ids.clone()}
    return {key: value.to(settings.device) for key, value in batch.items()}


class _NullLogger:
    """Stands in for Composer's ``Logger`` in :func:`pruning_step_fn` (metrics are read, then dropped)."""

    def log_metrics(self, metrics: dict[str, Any]) -> None:
        del metrics


@dataclass
class _CallbackState:
    """The two fields of Composer's ``State`` that ``PruningMonitor`` reads each batch."""
    model: nn.Module
    batch: int

    @property
    def timestamp(self) -> Any:
        return SimpleNamespace(batch=SimpleNamespace(value=self.batch))


def plain_step_fn(model: nn.Module, optimizer: torch.optim.Optimizer,
                  batch: dict[str, torch.Tensor]) -> Callable[[int], None]:
    """One training step of an HF causal LM: forward with labels, backward, AdamW."""
    def step(index: int) -> None:
        del index
        optimizer.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        optimizer.step()
    return step


def pruning_step_fn(model: nn.Module, optimizer: torch.optim.Optimizer,
                    batch: dict[str, torch.Tensor]) -> Callable[[int], None]:
    """One pruning step as a Composer run does it, ``pruning_monitor`` callback included.

    The step of the gate noise is set (as ``lagrangian``'s ``before_forward`` does); the
    loss is ``lm + lagrangian`` (paper eq. 3); after the step the log-alphas are clamped
    (as ``mask_learning`` does) and ``batch_end`` reads the l0 metrics.
    """
    monitor = PruningMonitor(masks_dir=tempfile.gettempdir())
    logger = _NullLogger()

    def step(index: int) -> None:
        state = _CallbackState(model=model, batch=index)
        model.pruning_step = index
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss(model(batch), batch)
        loss['total'].backward()
        optimizer.step()
        with torch.no_grad():
            model.pruner.l0_masks.clamp_()
        monitor.batch_end(state, logger)
    return step


def _synchronize(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def time_steps(step: Callable[[int], None], first: int, count: int, device: str) -> list[float]:
    """Runs steps ``first .. first + count - 1``, each timed to the end of a device sync."""
    _synchronize(device)
    times = []
    for index in range(first, first + count):
        start = time.perf_counter()
        step(index)
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def _full_values(params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """CPU copies of (possibly DTensor) parameters."""
    return [(p.full_tensor() if hasattr(p, 'full_tensor') else p).detach().float().cpu().clone() for p in params]


# ----------------------------------------------------------------------------- measuring
@contextlib.contextmanager
def peak_memory(device: str) -> Iterator[list[Optional[float]]]:
    """Yields a one-element list that holds the peak allocated GiB (GPU) on exit, else None."""
    holder: list[Optional[float]] = [None]
    if device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    try:
        yield holder
    finally:
        if device == 'cuda':
            holder[0] = torch.cuda.max_memory_allocated() / 2**30


def release(device: str) -> None:
    gc.collect()
    if device == 'cuda':
        torch.cuda.empty_cache()


def new_result(kind: str, module: nn.Module, settings: Settings) -> StepResult:
    """An empty result for ``module`` (a CPU model, before sharding): shape, params, FLOPs."""
    shape = ModelShape.from_hf_config(hf_model_of(module).config)
    counted = count_params(shape)
    actual = sum(p.numel() for p in hf_model_of(module).parameters())
    if actual != counted:
        raise RuntimeError(f'{kind}: count_params {counted} != the model\'s {actual} parameters')
    return StepResult(kind=kind, label=KIND_LABELS[kind], shape=dataclasses.asdict(shape), params=counted,
                      flops_per_token=flops_per_token(shape, settings.seq_len),
                      tokens_per_step=settings.tokens_per_step)


def train_and_time(kind: str, module: nn.Module, settings: Settings, mesh: DeviceMesh, result: StepResult) -> None:
    """Shards ``module``, runs ``warmup`` untimed and ``steps`` timed steps, fills ``result``.

    For the pruning step it also records whether the optimizer changed the log-alphas
    (its own, sharded parameter objects) during the timed steps.
    """
    shard(module, settings, mesh)
    module.train()
    optimizer = make_optimizer(module)
    batch = random_batch(settings, result.shape['vocab_size'])
    make_step = pruning_step_fn if kind == 'pruning' else plain_step_fn
    step = make_step(module, optimizer, batch)
    for index in range(settings.warmup):
        step(index)
    watched = optimizer.param_groups[1]['params'] if kind == 'pruning' else []  # log-alphas
    before = _full_values(watched)
    result.step_times_s = time_steps(step, settings.warmup, settings.steps, settings.device)
    if watched:
        after = _full_values(watched)
        result.mask_params_updated = any(not torch.equal(a, b) for a, b in zip(before, after))


def measure(kind: str, module: nn.Module, settings: Settings, mesh: DeviceMesh) -> StepResult:
    """Measures one kind of step; an out-of-memory error becomes the result's ``error``."""
    result = new_result(kind, module, settings)
    log.info('%s: %s, %s parameters', kind, KIND_LABELS[kind], f'{result.params:,}')
    try:
        with peak_memory(settings.device) as peak:
            train_and_time(kind, module, settings, mesh, result)
        result.peak_memory_gib = peak[0]
    except torch.OutOfMemoryError as err:
        result.error = f'out of memory ({str(err).splitlines()[0][:120]})'
        log.error('%s: %s; try a smaller --batch-size or --activation-checkpointing', kind, result.error)
    if result.mask_params_updated is False:
        log.warning(
            'pruning: the optimizer never changed the log-alphas. Under FSDP2 the pruner\'s '
            'gradients stay on its unsharded parameters: FSDP2 registers its backward hooks through '
            'torch.utils._pytree, which treats the PrunerOutput dataclass as a leaf.')
    if result.step_time_s:
        log.info('%s: %.4f s/step, %.0f tokens/s', kind, result.step_time_s, result.tokens_per_s)
    return result


def build_models(settings: Settings, config_dir: Path) -> dict[str, nn.Module]:
    """The three models on the CPU: plain source, pruning source, and its exported target."""
    started = time.perf_counter()
    pruning_model = build_pruning(config_dir, settings)
    exported = export_target_model(pruning_model)
    plain = build_plain(config_dir, settings.seed)
    log.info('built the models and exported the target in %.1f s', time.perf_counter() - started)
    return {'plain': plain, 'pruning': pruning_model, 'exported': exported}


def run_benchmark(settings: Settings, mesh: DeviceMesh) -> list[StepResult]:
    """Measures the three kinds one after the other, freeing each model before the next."""
    results = []
    with tempfile.TemporaryDirectory(prefix='gpu-throughput-') as tmp:
        models = build_models(settings, write_source_config(settings, Path(tmp) / 'source'))
    for kind in KINDS:
        results.append(measure(kind, models.pop(kind), settings, mesh))
        release(settings.device)
        if settings.device == 'cuda':
            log.info('after %s: %.2f GiB still allocated', kind, torch.cuda.memory_allocated() / 2**30)
    return results


# ----------------------------------------------------------------------------- output
def _fmt(value: Optional[float], spec: str, suffix: str = '') -> str:
    return 'n/a' if value is None else f'{value:{spec}}{suffix}'


def _fmt_small(value: Optional[float]) -> str:
    """One decimal for GPU-sized numbers, three significant digits for the smoke run's tiny ones."""
    if value is None:
        return 'n/a'
    return f'{value:,.1f}' if abs(value) >= 10 else f'{value:.3g}'


def _shape_text(shape: dict[str, Any]) -> str:
    return (f'{shape["num_layers"]} layers, hidden {shape["hidden_size"]}, {shape["num_attention_heads"]} heads / '
            f'{shape["num_key_value_heads"]} KV heads (head_dim {shape["head_dim"]}), '
            f'FFN {shape["intermediate_size"]}, vocab {shape["vocab_size"]}')


def command_line(argv: Optional[Sequence[str]]) -> str:
    args = list(sys.argv[1:] if argv is None else argv)
    return ' '.join(['PYTHONPATH=. python benchmarks/gpu_throughput.py', *args])


def render_markdown(results: list[StepResult], settings: Settings, env: Environment, command: str) -> str:
    """The results table, preceded by the command, device, settings and FLOP formula it was made with."""
    by_kind = {r.kind: r for r in results}
    plain_rate = by_kind['plain'].tokens_per_s
    precision = 'param bf16 / reduce fp32 (FSDP2 MixedPrecisionPolicy)' if settings.dtype == 'bf16' else 'fp32'
    lines = []
    if settings.smoke:
        lines += ['**CPU smoke run: a tiny model on the CPU, to check the script. These are not GPU numbers.**', '']
    lines += [
        f'Command: `{command}`',
        '',
        f'Device: {env.device_name}; peak {_fmt(env.peak_tflops, ".0f", " TFLOP/s")}; torch {env.torch}, '
        f'transformers {env.transformers}, Python {env.python}; world size {env.world_size} ({env.backend}); '
        f'FSDP2 fully_shard per decoder layer + model (+ pruner); {precision}; SDPA attention; '
        f'activation checkpointing {"on" if settings.activation_checkpointing else "off"}. '
        f'Batch {settings.batch_size} x {settings.seq_len} tokens, {settings.warmup} warm-up + {settings.steps} '
        'timed steps per kind, median step time; AdamW (the pruning step: 3 parameter groups).',
        '',
        f'Source: {_shape_text(by_kind["plain"].shape)}: {by_kind["plain"].params:,} parameters. '
        f'Exported target: {_shape_text(by_kind["exported"].shape)}: {by_kind["exported"].params:,} parameters.',
        'Model FLOPs per token = 6 N + 12 L (heads x head_dim) S (PaLM, App. B; N = matmul parameters, '
        'all but the input embedding); the pruning step is counted at the source\'s FLOPs.',
        '',
        '| step | params (M) | step time (s) | tokens/s | vs plain | model TFLOP/s | MFU | peak memory (GiB) |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for r in results:
        if r.error:
            lines.append(f'| {r.label} | {_fmt_small(r.params / 1e6)} | {r.error} | | | | | |')
            continue
        ratio = r.tokens_per_s / plain_rate if r.tokens_per_s and plain_rate else None
        lines.append(
            f'| {r.label} | {_fmt_small(r.params / 1e6)} | {_fmt(r.step_time_s, ".4f")} | '
            f'{_fmt(r.tokens_per_s, ",.0f")} | '
            f'{_fmt(ratio, ".3f")} | {_fmt_small(r.tflops_per_s)} | {_fmt(r.mfu(env.peak_tflops), ".1%")} | '
            f'{_fmt(r.peak_memory_gib, ".1f")} |')
    updated = by_kind['pruning'].mask_params_updated
    if updated is not None:
        lines += ['', 'Log-alphas changed by the optimizer during the timed pruning steps: '
                      f'{"yes" if updated else "**no** (see the log)"}.']
    return '\n'.join(lines) + '\n'


def summary_json(results: list[StepResult], settings: Settings, env: Environment, command: str) -> dict[str, Any]:
    by_kind = {r.kind: r for r in results}
    plain_rate = by_kind['plain'].tokens_per_s

    def ratio(kind: str) -> Optional[float]:
        rate = by_kind[kind].tokens_per_s
        return rate / plain_rate if rate and plain_rate else None

    settings_data = dataclasses.asdict(settings)
    settings_data['out'] = str(settings.out)
    return {
        'command': command,
        'settings': settings_data,
        'environment': dataclasses.asdict(env),
        'flops_per_token_formula': '6 * matmul_params + 12 * layers * heads * head_dim * seq_len',
        'results': [r.to_json(env.peak_tflops) for r in results],
        'ratios': {'pruning_over_plain': ratio('pruning'), 'exported_over_plain': ratio('exported')},
    }


def write_outputs(markdown: str, data: dict[str, Any], out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown)
    json_path = out.with_suffix('.json')
    json_path.write_text(json.dumps(data, indent=2) + '\n')
    return json_path


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    settings = parse_args(argv)
    started = time.perf_counter()
    mesh = init_distributed(settings)
    try:
        device_name, peak = detect_peak_tflops(settings)
        env = Environment(device_name=device_name, peak_tflops=peak, torch=torch.__version__,
                          transformers=transformers.__version__, python=platform.python_version(),
                          world_size=dist.get_world_size(), backend=dist.get_backend())
        results = run_benchmark(settings, mesh)
        command = command_line(argv)
        markdown = render_markdown(results, settings, env, command)
        json_path = write_outputs(markdown, summary_json(results, settings, env, command), settings.out)
        sys.stdout.write(markdown)
        sys.stdout.flush()
        log.info('wrote %s and %s in %.1f s', settings.out, json_path, time.perf_counter() - started)
    finally:
        dist.destroy_process_group()
    return 1 if any(r.error for r in results) else 0


if __name__ == '__main__':
    sys.exit(main())
