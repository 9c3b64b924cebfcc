"""Which knob to turn first when a run does not fit in the memory of one device.

Each knob is tried on its own, at the smallest change that makes the run fit
(:func:`knob_options`). The recommendation (:func:`recommend`) is the first option that
fits, in this order of what it costs the run:

1. a smaller ``device_train_microbatch_size`` (halved until it fits): the same training,
   only more gradient-accumulation steps;
2. activation checkpointing on (``fsdp_config.activation_checkpointing=true``, at the largest
   microbatch that then fits): the same training, about one more forward per step;
3. more GPUs (doubled until it fits; FSDP2 full sharding is switched on if the run has no
   ``fsdp_config``, as DDP replicates everything): the same training on more hardware;
4. a shorter ``max_seq_len`` (halved until it fits): changes what the model learns.

When the weights, gradients, optimizer state and fixed overhead alone exceed the budget,
no activation knob can help, and more GPUs come first.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

from composer_plugins.tools.planning.memory import (
    CPU_BASELINE_BYTES,
    GPU_CONTEXT_BYTES,
    FsdpInputs,
    MemoryBreakdown,
    MemoryInputs,
    estimate_memory,
)

MIN_SEQ_LEN = 128
"""Shortest ``max_seq_len`` the advice proposes."""


@dataclass(frozen=True)
class KnobOption:
    """One knob turned as far as needed (or as far as it goes).

    Attributes:
        knob: ``microbatch``, ``activation_checkpointing``, ``gpus`` or ``seq_len``.
        description: what changes, e.g. ``device_train_microbatch_size 8 -> 2``.
        overrides: the YAML overrides and ``shear plan`` flags that make the change.
        inputs: the changed inputs.
        breakdown: their estimate.
        fits: whether the estimate fits in the budget.
    """
    knob: str
    description: str
    overrides: tuple[str, ...]
    inputs: MemoryInputs
    breakdown: MemoryBreakdown
    fits: bool


def knob_options(inputs: MemoryInputs, budget: int, seq_len_key: str = 'max_seq_len') -> list[KnobOption]:
    """Every applicable knob, each at its smallest change that fits (else its furthest), in preference order.

    Args:
        inputs: the run as planned.
        budget: bytes available per device.
        seq_len_key: the override that changes the sequence length.
    """
    options = [
        _first_fit('microbatch', _microbatch_steps(inputs), budget),
        _activation_checkpointing(inputs, budget),
        _first_fit('gpus', _gpu_steps(inputs), budget),
        _first_fit('seq_len', _seq_len_steps(inputs, seq_len_key), budget),
    ]
    return [option for option in options if option is not None]


def recommend(inputs: MemoryInputs, budget: int, options: list[KnobOption]) -> Optional[KnobOption]:
    """The knob to turn first: the first fitting option, more GPUs first when the static part does not fit."""
    if estimate_memory(inputs).static + _fixed_overhead(inputs) > budget:
        for option in options:
            if option.knob == 'gpus' and option.fits:
                return option
    return next((option for option in options if option.fits), None)


def _fixed_overhead(inputs: MemoryInputs) -> int:
    return CPU_BASELINE_BYTES if inputs.device == 'cpu' else GPU_CONTEXT_BYTES


Step = tuple[str, tuple[str, ...], MemoryInputs]


def _first_fit(knob: str, steps: Iterator[Step], budget: int) -> Optional[KnobOption]:
    last: Optional[KnobOption] = None
    for description, overrides, changed in steps:
        breakdown = estimate_memory(changed)
        last = KnobOption(knob, description, overrides, changed, breakdown, breakdown.total <= budget)
        if last.fits:
            break
    return last


def _halvings(start: int, stop: int) -> Iterator[int]:
    value = start // 2
    while value >= stop:
        yield value
        value //= 2


def _microbatch_steps(inputs: MemoryInputs, label: str = '') -> Iterator[Step]:
    current = inputs.effective_microbatch
    for size in _halvings(current, 1):
        yield (f'{label}device_train_microbatch_size {current} -> {size}',
               (f'device_train_microbatch_size={size}',), inputs.replace(microbatch_size=size))


def _activation_checkpointing(inputs: MemoryInputs, budget: int) -> Optional[KnobOption]:
    if inputs.device == 'cpu' or inputs.activation_checkpointing:
        return None
    with_ac = inputs.replace(fsdp=(inputs.fsdp or FsdpInputs()).with_checkpointing())
    label = 'activation checkpointing on' + ('' if inputs.fsdp else ' (with FSDP2 full sharding)')
    flag = ('fsdp_config.activation_checkpointing=true',)

    def steps() -> Iterator[Step]:
        yield label, flag, with_ac
        for description, overrides, changed in _microbatch_steps(with_ac, label=f'{label}, '):
            yield description, flag + overrides, changed

    return _first_fit('activation_checkpointing', steps(), budget)


def _gpu_steps(inputs: MemoryInputs) -> Iterator[Step]:
    if inputs.device == 'cpu':
        return
    fsdp = inputs.fsdp
    extra: tuple[str, ...] = ()
    note = ''
    if fsdp is None:
        fsdp = FsdpInputs()
        extra = ('fsdp_config.reshard_after_forward=true',)
        note = ' with FSDP2 full sharding'
    gpus = inputs.gpus * 2
    while gpus <= inputs.global_batch_size:
        if inputs.global_batch_size % gpus == 0:
            yield f'--gpus {inputs.gpus} -> {gpus}{note}', (f'--gpus {gpus}', *extra), inputs.replace(gpus=gpus,
                                                                                                   fsdp=fsdp)
        gpus *= 2


def _seq_len_steps(inputs: MemoryInputs, key: str) -> Iterator[Step]:
    for seq_len in _halvings(inputs.seq_len, MIN_SEQ_LEN):
        yield f'max_seq_len {inputs.seq_len} -> {seq_len}', (f'{key}={seq_len}',), inputs.replace(seq_len=seq_len)

