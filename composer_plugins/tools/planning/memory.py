"""Memory per device of a pruning or continued-training run: the formula behind ``shear plan``.

Everything is in bytes, per GPU (or, with ``device='cpu'``, per training process), for
one optimizer step of :class:`~composer_plugins.models.causal_lm.ShearCausalLM` trained by
Composer. Notation:

* ``P`` parameters of the trained (source) model, :func:`~composer_plugins.pruning.shapes.count_params`;
  ``P_layer`` one decoder layer (:func:`~composer_plugins.pruning.shapes.count_layer_params`),
  ``P_root`` what no layer holds: embeddings, LM head if untied, final norm;
* ``L`` layers, ``H`` hidden, ``A = n_q * head_dim`` query width, ``K = n_kv * head_dim``
  key/value width, ``F`` FFN width, ``V`` vocabulary, ``n_q`` query heads;
* ``N`` GPUs, ``S`` the shard count (``N`` under FSDP2, which shards every parameter over all
  ranks; 1 under DDP, i.e. no ``fsdp_config``, and on CPU);
* ``b`` the microbatch actually run (``min(device_train_microbatch_size, global_batch / N)``),
  ``s`` ``max_seq_len``, ``T = b * s`` tokens per microbatch;
* ``c`` bytes of an activation (2 under ``amp_bf16`` / ``amp_fp16``, 4 under ``fp32``);
  ``w`` bytes of FSDP2's all-gathered parameters (its ``param_dtype``: ``c`` under mixed precision
  ``DEFAULT`` / ``PURE``, 4 under ``FULL``); ``r`` bytes of the unsharded gradient before its
  reduce-scatter (``reduce_dtype``: ``c`` under ``PURE``, else 4); ``k`` optimizer states per
  parameter (2 for AdamW); ``P_linear`` the weights of every Linear (projections and LM head).

Terms (their sum is the estimate)::

    parameters   = 4 P / S                  fp32 master weights (load_causal_lm builds fp32; FSDP shards them)
    gradients    = 4 P / S  [+ 4 P for DDP on >1 GPU: its gradient buckets are a second copy]
    optimizer    = 4 k P / S                AdamW exp_avg and exp_avg_sq, fp32, sharded like the parameters
    masks        = 16 (P_mask + P_lambda) / S + 4 (L (A + F) + 8 P_mask)
                                            log-alphas and multipliers with gradient and AdamW states
                                            (composer_plugins/pruning/masks.py, lagrangian.py), plus the
                                            sampled masks and per-layer head / FFN scales of one forward
                                            (composer_plugins/models/mask_hooks.py)
    working copy = FSDP2, reshard_after_forward true: w (P_root + 2 P_layer) + r P_layer
                                            the root unit (embeddings, LM head, final norm) stays gathered
                                            from forward to backward (FSDP2 never reshards the root); one
                                            layer unit is gathered and the next prefetched; one layer's
                                            unsharded gradient waits for its reduce-scatter
                   reshard_after_forward false: w P + r P_layer (every unit stays gathered until backward);
                   an int g: w (P_root + 2 P_layer + P / g) + r P_layer (resharded to g ranks in between)
                 + 2 P_linear  when autocast casts (amp_* with fp32 parameters: DDP, one GPU, or FSDP2
                                            mixed precision FULL): the 16-bit copy of every Linear weight is
                                            saved for backward (without checkpointing) or held by autocast's
                                            cache until the forward ends (with it); FSDP2's resharding does
                                            not free these copies
    activations  = T L a_layer + T a_model  (no activation checkpointing)
                 = T L c H + T a_layer + T a_model  (fsdp_config.activation_checkpointing:
                                            each decoder layer keeps only its input, and one layer is
                                            recomputed at a time during backward; training runs with
                                            use_cache=False, so no K/V cache outlives a layer)
    logits       = T V (c + 12)             the logits (c bytes, kept in Composer's state.outputs), the fp32
                                            log-softmax the cross entropy saves, its gradient and the fp32
                                            gradient of the logits, alive together at the start of backward
                                            (transformers' ForCausalLMLoss upcasts to fp32)
    teacher      = w_t P_t / S + [FSDP2: w_t P_root_t] + 12 T V
                                            with a ``distillation`` block: the frozen teacher's weights
                                            (``w_t`` = 2 under amp_bf16, else 4; sharded like the student),
                                            its root unit, which FSDP2 leaves gathered after a forward
                                            without backward, and the KD term's tensors alive at the start of
                                            backward: the teacher's fp32 probabilities and the student's fp32
                                            log-softmax that eq. (1) saves, and the latter's gradient
                                            (composer_plugins/distillation/loss.py). The teacher's forward
                                            keeps no graph: its activations are gone by then
    overhead     = GPU: 1 GiB CUDA context, cuBLAS workspace and NCCL buffers
                        + 10 % of (working copy + activations + logits) caching-allocator fragmentation
                   CPU: 1 GiB process baseline (measured peak RSS of ``python train.py yamls/tiny.yaml``
                        at 4 x 256 tokens: 1.02 GiB; torch, Composer, llm-foundry, transformers, streaming)
                        + 100 % of the activations: glibc keeps the blocks freed by one backward resident
                        and the next forward does not reuse all of them (see below)

Activations per token and layer, ``a_layer`` (bytes; every tensor the autograd graph saves,
counted in transformers 4.51's Llama / Mistral / Qwen2 layers with SDPA)::

    norms      2 (4 + 2c) H     each RMSNorm saves its fp32 input, the normalised value and its output
                                (composer_plugins/models/masked_norm.py computes the same way)
    attention  c (A + 2A)       rotated queries, SDPA's output and its contiguous copy (o_proj input)
             + 2 c K            rotated keys and values, as the kernel saves them; with grouped-query
                                attention under SDPA / eager, 2 c A instead: it saves repeat_kv's copies
                                (training keeps no K/V cache, so the un-repeated K, V are not held)
             + 4 n_q            SDPA's log-sum-exp (flash kernels); eager instead saves the attention
                                probabilities: + n_q s (4 + c [c = 2])
    MLP        4 c F            gate, SiLU(gate), up and their product (down_proj input)
    masks      c A [a mask acts on heads]  + c F [on FFN channels]  + 2 c H [hidden]
                                the mask hooks multiply by a tensor that requires grad, so the unmasked
                                o_proj input, down_proj input and the o_proj / down_proj outputs stay saved

``a_model = (4 + 2c) H`` (final norm) ``+ c H`` with a hidden mask (the unmasked embedding output).

With activation checkpointing and autocast casts, the end of the forward is evaluated too (casts
held by autocast's cache, checkpointed activations without a recomputed layer, logits at 12 bytes:
the previous and the new microbatch's logits, the loss's fp32 copy and log-softmax), and the
larger of the two moments is the estimate (``MemoryBreakdown.phase``).

Otherwise the peak is taken at the start of the backward of a microbatch, with all gradients counted
(they accumulate while earlier microbatches' and layers' blocks are freed; a caching
allocator rarely hands that memory back), so gradient accumulation does not change the
estimate: only the microbatch size does. Not counted: evaluation (``device_eval_batch_size``
forward passes, which keep no graph), checkpoint saving, dataloader workers (separate
processes) and ``fsdp_config.activation_cpu_offload`` (rejected as not modelled).

The GPU constants (1 GiB context, 10 % fragmentation) are typical values, not measured here:
this project's development machine has no GPU.

CPU heap retention was measured with SmolLM2-135M-shaped models in one process (fp32, 4 x
256 tokens, 3 steps, no Composer): after the first step the resident set grows by about the
activations again (30 layers: 6.36 GiB peak where the other terms sum to 5.02 GiB, with
activations of 1.45 GiB; 10 layers: 3.20-3.33 GiB for 3.03 GiB and 0.50 GiB). These runs fixed
the constant before the ``python train.py`` runs it is checked against were measured. ``tests/planning`` and
``benchmarks/memory_plan.py`` compare the estimate with the measured peak RSS of
``python train.py`` runs.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal, Optional, Union

from composer_plugins.errors import ConfigError
from composer_plugins.pruning.shapes import ModelShape, count_embedding_params, count_layer_params, count_params

GIB = 1024 ** 3

Device = Literal['gpu', 'cpu']
Precision = Literal['fp32', 'amp_bf16', 'amp_fp16']
MixedPrecision = Literal['DEFAULT', 'PURE', 'FULL', 'CUSTOM']
LOW_PRECISION = ('bf16', 'bfloat16', 'fp16', 'float16')
AttnImplementation = Literal['sdpa', 'eager', 'flash_attention_2']

GPU_CONTEXT_BYTES = 1 * GIB
"""CUDA context, cuBLAS workspaces and NCCL communicator buffers of one training process."""
GPU_FRAGMENTATION = 0.10
"""Share of the transient terms the CUDA caching allocator holds on top (fragmentation)."""
CPU_BASELINE_BYTES = 1 * GIB
"""Peak RSS of a training process whose model is negligible (measured: 1.02 GiB, see module doc)."""
CPU_HEAP_RETENTION = 1.0
"""Share of the activations glibc keeps resident on top of the live tensors (measured, module doc)."""
LOGITS_FP32_BYTES = 12
"""Bytes per logit beyond the logits themselves at the start of backward: fp32 log-softmax, its
gradient and the logits' fp32 gradient."""
LOGITS_FORWARD_BYTES = 12
"""Bytes per logit at the end of the forward: the previous microbatch's logits (Composer's
``state.outputs``) and the new ones (``2 c``), the loss's fp32 upcast (4 when ``c = 2``) and the
fp32 log-softmax (4): 12 for ``c`` = 2 or 4."""
MASK_SAMPLE_TENSORS = 8
"""fp32 tensors per log-alpha alive in one forward of the pruner (noise, sample, clamp, keep-probs...)."""


@dataclass(frozen=True)
class MaskInputs:
    """The pruner of a pruning run (``model.pruning``).

    Attributes:
        log_alphas: learned gate parameters, the sum of every mask's size.
        multipliers: Lagrange multipliers (two per mask type).
        scales_heads: some mask acts on attention heads (``layer``, ``head_layer``, ``kv_group``, ``head``).
        scales_ffn: some mask acts on FFN channels (``layer``, ``mlp``, ``intermediate``).
        scales_hidden: the ``hidden`` mask is learned.
    """
    log_alphas: int
    multipliers: int
    scales_heads: bool
    scales_ffn: bool
    scales_hidden: bool

    @classmethod
    def from_mask_shapes(cls, shapes: dict[str, tuple[int, ...]]) -> MaskInputs:
        """From ``{mask name: gate shape}``.

        For example the specs of :func:`~composer_plugins.pruning.masks.build_mask_specs`.
        """
        names = set(shapes)
        return cls(
            log_alphas=sum(math.prod(shape) for shape in shapes.values()),
            multipliers=2 * len(shapes),
            scales_heads=bool(names & {'layer', 'head_layer', 'kv_group', 'head'}),
            scales_ffn=bool(names & {'layer', 'mlp', 'intermediate'}),
            scales_hidden='hidden' in names,
        )


@dataclass(frozen=True)
class TeacherInputs:
    """The frozen teacher of a run with a ``distillation`` block.

    Attributes:
        shape: the teacher's shape.
        weight_bytes: bytes per teacher weight (2 under ``amp_bf16``, else 4).
    """
    shape: ModelShape
    weight_bytes: int = 4


@dataclass(frozen=True)
class FsdpInputs:
    """The parts of ``fsdp_config`` (Composer's FSDP2) that change memory.

    Attributes:
        reshard_after_forward: ``true`` (full sharding, ZeRO-3), ``false`` (keep gathered until
            backward, ZeRO-2) or a number of ranks to reshard to in between.
        mixed_precision: ``DEFAULT``, ``PURE``, ``FULL`` (Composer's ``get_mixed_precision``) or
            ``CUSTOM`` for explicit ``param_dtype`` / ``reduce_dtype``.
        param_dtype: with ``CUSTOM``: the all-gather dtype (None = the parameters' own fp32).
        reduce_dtype: with ``CUSTOM``: the reduce-scatter dtype (None = fp32).
        activation_checkpointing: checkpoint every decoder layer.
    """
    reshard_after_forward: Union[bool, int] = True
    mixed_precision: MixedPrecision = 'DEFAULT'
    param_dtype: Optional[str] = None
    reduce_dtype: Optional[str] = None
    activation_checkpointing: bool = False

    def dtype_bytes(self, precision: str) -> tuple[int, int]:
        """``(w, r)``: bytes of a gathered parameter and of an unsharded gradient under ``precision``."""
        c = 4 if precision == 'fp32' else 2
        if self.mixed_precision == 'CUSTOM':
            return (2 if self.param_dtype in LOW_PRECISION else 4, 2 if self.reduce_dtype in LOW_PRECISION else 4)
        if self.mixed_precision == 'FULL':
            return 4, 4
        if self.mixed_precision == 'PURE':
            return c, c
        return c, 4

    def with_checkpointing(self) -> FsdpInputs:
        return dataclasses.replace(self, activation_checkpointing=True)


@dataclass(frozen=True)
class MemoryInputs:
    """Everything the estimate depends on.

    Attributes:
        shape: shape of the trained model (for a pruning run, the source).
        masks: the pruner, or None for continued pre-training.
        global_batch_size: ``global_train_batch_size`` (samples per optimizer step, all GPUs).
        microbatch_size: ``device_train_microbatch_size`` (capped at the per-GPU batch).
        seq_len: ``max_seq_len``.
        gpus: data-parallel processes (GPUs); 1 on CPU.
        device: ``gpu`` or ``cpu`` (fp32, one process, no FSDP).
        precision: Composer ``precision``.
        fsdp: ``fsdp_config``, or None for DDP / a single process.
        attn_implementation: ``model.attn_implementation``.
        optimizer_states: fp32 tensors the optimizer keeps per parameter (AdamW: 2).
        teacher: the distillation teacher, or None.
    """
    shape: ModelShape
    global_batch_size: int
    microbatch_size: int
    seq_len: int
    masks: Optional[MaskInputs] = None
    gpus: int = 1
    device: Device = 'gpu'
    precision: Precision = 'fp32'
    fsdp: Optional[FsdpInputs] = None
    attn_implementation: AttnImplementation = 'sdpa'
    optimizer_states: int = 2
    teacher: Optional[TeacherInputs] = None

    def __post_init__(self) -> None:
        for name in ('global_batch_size', 'microbatch_size', 'seq_len', 'gpus'):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                flag = '--gpus' if name == 'gpus' else name
                raise ConfigError(f'{flag}: got {value!r}; expected a positive int')
        if self.global_batch_size % self.gpus:
            raise ConfigError(
                f'global_train_batch_size ({self.global_batch_size}) is not divisible by --gpus ({self.gpus}); '
                'Composer gives every GPU the same number of samples',
            )
        if self.device == 'cpu':
            if self.gpus != 1:
                raise ConfigError(f'--device cpu plans one training process; got --gpus {self.gpus}')
            if self.fsdp is not None or self.precision != 'fp32':
                raise ConfigError('--device cpu plans fp32 without FSDP (drop fsdp_config, precision=fp32)')

    def replace(self, **changes) -> MemoryInputs:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ derived sizes
    @property
    def device_batch_size(self) -> int:
        """Samples per GPU per optimizer step."""
        return self.global_batch_size // self.gpus

    @property
    def effective_microbatch(self) -> int:
        """The microbatch Composer runs: never more than the per-GPU batch."""
        return min(self.microbatch_size, self.device_batch_size)

    @property
    def microbatches(self) -> int:
        """Forward/backward passes per GPU per optimizer step (gradient accumulation steps)."""
        return math.ceil(self.device_batch_size / self.effective_microbatch)

    @property
    def shard_count(self) -> int:
        """``S``: how many GPUs one copy of parameters, gradients and optimizer state is spread over."""
        return 1 if self.fsdp is None else self.gpus

    @property
    def activation_bytes(self) -> int:
        """``c``: 2 under ``amp_*`` precisions, 4 under fp32."""
        return 4 if self.precision == 'fp32' else 2

    @property
    def activation_checkpointing(self) -> bool:
        return self.fsdp is not None and self.fsdp.activation_checkpointing

    @property
    def autocast_casts_weights(self) -> bool:
        """amp_* with fp32 parameters in the forward: autocast makes a 16-bit copy of every Linear weight."""
        if self.precision == 'fp32':
            return False
        return self.fsdp is None or self.fsdp.dtype_bytes(self.precision)[0] == 4


TERMS = ('parameters', 'gradients', 'optimizer', 'masks', 'working_copy', 'activations', 'logits', 'teacher',
         'overhead')
"""The terms of :class:`MemoryBreakdown`, in table order."""


@dataclass(frozen=True)
class MemoryBreakdown:
    """The estimate, term by term, in bytes per GPU (per process on CPU); see the module docstring."""
    parameters: int
    gradients: int
    optimizer: int
    masks: int
    working_copy: int
    activations: int
    logits: int
    teacher: int
    overhead: int
    tokens_per_step: int
    tokens_per_microbatch: int
    device_batch_size: int
    microbatch_size: int
    microbatches: int
    phase: str = 'backward start'

    def terms(self) -> dict[str, int]:
        """Every term by name, in table order."""
        return {name: getattr(self, name) for name in TERMS}

    @property
    def total(self) -> int:
        return sum(self.terms().values())

    @property
    def static(self) -> int:
        """The part no batch knob changes: weights, gradients, optimizer state and masks."""
        return self.parameters + self.gradients + self.optimizer + self.masks


def estimate_memory(inputs: MemoryInputs) -> MemoryBreakdown:
    """Peak memory per GPU (or per CPU process) of one training step; formula in the module docstring.

    The peak is the start of backward, except with activation checkpointing while autocast casts
    the weights: then the end of the forward (casts cached, no recomputed layer, no logit
    gradients yet) can be higher, and the larger of the two is returned.
    """
    backward = _phase(inputs, 'backward start')
    if inputs.activation_checkpointing and inputs.autocast_casts_weights:
        forward = _phase(inputs, 'forward end')
        if forward.total > backward.total:
            return forward
    return backward


def _phase(inputs: MemoryInputs, phase: str) -> MemoryBreakdown:
    shape = inputs.shape
    params = count_params(shape)
    shards = inputs.shard_count
    ddp_buckets = 4 * params if inputs.fsdp is None and inputs.gpus > 1 else 0
    tokens = inputs.effective_microbatch * inputs.seq_len
    forward_end = phase == 'forward end'
    working = _working_copy_bytes(inputs, casts_alive=forward_end or not inputs.activation_checkpointing)
    activations = tokens * _activation_bytes_per_token(inputs, recomputing=not forward_end)
    logit_bytes = LOGITS_FORWARD_BYTES if forward_end else inputs.activation_bytes + LOGITS_FP32_BYTES
    logits = tokens * shape.vocab_size * logit_bytes
    if inputs.device == 'cpu':
        overhead = CPU_BASELINE_BYTES + round(CPU_HEAP_RETENTION * activations)
    else:
        overhead = GPU_CONTEXT_BYTES + round(GPU_FRAGMENTATION * (working + activations + logits))
    return MemoryBreakdown(
        parameters=math.ceil(4 * params / shards),
        gradients=math.ceil(4 * params / shards) + ddp_buckets,
        optimizer=math.ceil(4 * inputs.optimizer_states * params / shards),
        masks=_mask_bytes(inputs, shards),
        working_copy=working,
        activations=activations,
        logits=logits,
        teacher=_teacher_bytes(inputs, tokens),
        overhead=overhead,
        tokens_per_step=inputs.global_batch_size * inputs.seq_len,
        tokens_per_microbatch=tokens,
        device_batch_size=inputs.device_batch_size,
        microbatch_size=inputs.effective_microbatch,
        microbatches=inputs.microbatches,
        phase=phase,
    )


def _mask_bytes(inputs: MemoryInputs, shards: int) -> int:
    masks = inputs.masks
    if masks is None:
        return 0
    shape = inputs.shape
    learned = masks.log_alphas + masks.multipliers
    persistent = math.ceil(4 * (2 + inputs.optimizer_states) * learned / shards)
    scales = shape.num_layers * (shape.num_attention_heads * shape.head_dim + shape.intermediate_size)
    return persistent + 4 * (scales + MASK_SAMPLE_TENSORS * masks.log_alphas)


KD_LOGIT_BYTES = 12
"""Bytes per logit of the KD term at the start of backward: teacher probabilities, student
log-softmax, its gradient (all fp32)."""


def _teacher_bytes(inputs: MemoryInputs, tokens: int) -> int:
    teacher = inputs.teacher
    if teacher is None:
        return 0
    weights = math.ceil(teacher.weight_bytes * count_params(teacher.shape) / inputs.shard_count)
    root = teacher.weight_bytes * _root_params(teacher.shape) if inputs.fsdp is not None else 0
    return weights + root + tokens * teacher.shape.vocab_size * KD_LOGIT_BYTES


def export_host_bytes(source: ModelShape, target: ModelShape, weight_bytes: int = 4) -> int:
    """Peak host memory of ``shear export`` (one CPU process; the GPUs play no part).

    ::

        export = b (P + P_root_t) + 1 GiB process baseline

    ``b`` bytes a weight as the checkpoint holds it (4: the fp32 master weights of an ``amp_bf16`` run),
    ``P`` the source's parameters, ``P_root_t`` the target's embeddings, untied LM head and final norm.
    The rebuilt model takes the checkpoint's tensors without a copy, and the export
    (:func:`~composer_plugins.models.export.export_pruned_model` with ``consume_source``) makes the
    target's embeddings first, then frees the source's, then each pruned layer, then each kept layer
    once it is sliced: the exported layers take the freed layers' place, so the peak is the source
    plus the exported embeddings. The scale rehearsal (``benchmarks/scale_rehearsal.py``) measures it.
    """
    return weight_bytes * (count_params(source) + _root_params(target)) + CPU_BASELINE_BYTES


def _root_params(shape: ModelShape) -> int:
    """``P_root``: parameters outside the decoder layers (embeddings, untied LM head, final norm)."""
    return count_embedding_params(shape) + shape.hidden_size


def _linear_params(shape: ModelShape) -> int:
    """Parameters of every Linear (what autocast casts): the layers' projections and the LM head."""
    layer_linear = count_layer_params(shape) - 2 * shape.hidden_size
    return shape.num_layers * layer_linear + shape.vocab_size * shape.hidden_size


def _working_copy_bytes(inputs: MemoryInputs, casts_alive: bool = True) -> int:
    shape = inputs.shape
    casts = 2 * _linear_params(shape) if inputs.autocast_casts_weights and casts_alive else 0
    fsdp = inputs.fsdp
    if fsdp is None:
        return casts
    w, r = fsdp.dtype_bytes(inputs.precision)
    layer = count_layer_params(shape)
    gradient = r * layer
    if fsdp.reshard_after_forward is False:
        return w * count_params(shape) + gradient + casts
    gathered = _root_params(shape) + 2 * layer
    if fsdp.reshard_after_forward is not True:  # an int: resharded to that many ranks between forward and backward
        gathered += math.ceil(count_params(shape) / fsdp.reshard_after_forward)
    return w * gathered + gradient + casts


def layer_activation_bytes_per_token(inputs: MemoryInputs) -> int:
    """``a_layer``: bytes one decoder layer saves for backward per token (module docstring)."""
    s = inputs.shape
    c = inputs.activation_bytes
    q_width = s.num_attention_heads * s.head_dim
    kv_width = s.num_key_value_heads * s.head_dim
    norms = 2 * (4 + 2 * c) * s.hidden_size
    attention = 3 * c * q_width
    if s.q_per_kv > 1 and inputs.attn_implementation != 'flash_attention_2':
        attention += 2 * c * q_width  # repeat_kv's copies: what SDPA / eager save instead of K and V
    else:
        attention += 2 * c * kv_width
    if inputs.attn_implementation == 'eager':
        attention += s.num_attention_heads * inputs.seq_len * (4 + (c if c < 4 else 0))
    else:
        attention += 4 * s.num_attention_heads
    mlp = 4 * c * s.intermediate_size
    masks = 0
    if inputs.masks is not None:
        masks += c * q_width if inputs.masks.scales_heads else 0
        masks += c * s.intermediate_size if inputs.masks.scales_ffn else 0
        masks += 2 * c * s.hidden_size if inputs.masks.scales_hidden else 0
    return norms + attention + mlp + masks


def _activation_bytes_per_token(inputs: MemoryInputs, recomputing: bool = True) -> int:
    s = inputs.shape
    c = inputs.activation_bytes
    per_layer = layer_activation_bytes_per_token(inputs)
    model_level = (4 + 2 * c) * s.hidden_size
    if inputs.masks is not None and inputs.masks.scales_hidden:
        model_level += c * s.hidden_size
    if not inputs.activation_checkpointing:
        return s.num_layers * per_layer + model_level
    kept = c * s.hidden_size  # each checkpointed layer's input; no K/V cache (use_cache=False)
    return s.num_layers * kept + (per_layer if recomputing else 0) + model_level
