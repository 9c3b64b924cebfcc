"""A memory plan as a text table (for people) or a JSON-ready dict (for scripts)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from composer_plugins.pruning.shapes import count_params
from composer_plugins.tools.planning.advice import KnobOption
from composer_plugins.tools.planning.memory import GIB, MemoryBreakdown, MemoryInputs, export_host_bytes
from composer_plugins.tools.planning.run_inputs import PlannedRun


@dataclass(frozen=True)
class MemoryPlan:
    """A planned run, its estimate and, with a budget, the advice.

    Attributes:
        yaml_path: the run YAML.
        run: the planned run.
        breakdown: its estimate.
        budget: bytes per device (``--gpu-mem``), or None for no fit check.
        options: every knob option (empty when the run fits or without a budget).
        recommendation: the knob to turn first, or None.
    """
    yaml_path: str
    run: PlannedRun
    breakdown: MemoryBreakdown
    budget: Optional[int]
    options: tuple[KnobOption, ...] = ()
    recommendation: Optional[KnobOption] = None

    @property
    def fits(self) -> Optional[bool]:
        return None if self.budget is None else self.breakdown.total <= self.budget

    @property
    def export_bytes(self) -> Optional[int]:
        """Host memory of ``shear export`` of this pruning run's fp32 checkpoint (None without pruning)."""
        pruning = self.run.config.model.pruning
        if pruning is None:
            return None
        source = self.run.inputs.shape
        return export_host_bytes(source, pruning.target.to_shape(source), 4)


GPUS_PER_NODE = 8
"""The node size the host-memory line assumes (``--gpus`` beyond it are other nodes)."""


def _gib(value: int) -> float:
    return round(value / GIB, 3)


def _labels(inputs: MemoryInputs) -> dict[str, str]:
    shards = inputs.shard_count
    sharded = f', /{shards}' if shards > 1 else ''
    c = 'bf16/fp16' if inputs.activation_bytes == 2 else 'fp32'
    return {
        'parameters': f'parameters (fp32 master{sharded})',
        'gradients': f'gradients (fp32{sharded}' + (', + DDP buckets)' if inputs.fsdp is None and inputs.gpus > 1
                                                     else ')'),
        'optimizer': f'optimizer state ({inputs.optimizer_states} x fp32{sharded})',
        'masks': 'masks + multipliers (with grads, optimizer state)',
        'working_copy': ('gathered FSDP units' + (' + autocast weight copies' if inputs.autocast_casts_weights else '')
                         if inputs.fsdp else 'autocast weight copies' if inputs.autocast_casts_weights
                         else 'weight copies (none: fp32 without FSDP)'),
        'activations': f'activations ({c}' + (', checkpointed)' if inputs.activation_checkpointing else ')'),
        'logits': 'logits + loss (fp32 log-softmax and grads)',
        'teacher': 'distillation teacher (frozen weights, KD tensors)' if inputs.teacher else 'teacher (none)',
        'overhead': ('process baseline + heap retention' if inputs.device == 'cpu'
                     else 'CUDA context + allocator fragmentation'),
    }


def _describe_setup(inputs: MemoryInputs, budget: Optional[int]) -> str:
    each = f', {budget / GIB:.1f} GiB each' if budget is not None else ''
    if inputs.device == 'cpu':
        return f'1 CPU process{each.replace(" each", "")}; fp32, no sharding'
    parts = [f'{inputs.gpus} x GPU{each}']
    if inputs.fsdp is None:
        parts.append('DDP (replicated)' if inputs.gpus > 1 else 'single GPU, no FSDP')
    else:
        fsdp = inputs.fsdp
        resharding = {True: 'full sharding', False: 'kept gathered until backward'}.get(
            fsdp.reshard_after_forward, f'resharded to {fsdp.reshard_after_forward} ranks after forward')
        w, r = fsdp.dtype_bytes(inputs.precision)
        parts.append(f'FSDP2 over {inputs.shard_count} ({resharding}), mixed precision {fsdp.mixed_precision} '
                     f'(gathers {"fp32" if w == 4 else "16-bit"}, reduces {"fp32" if r == 4 else "16-bit"})')
    parts.append(inputs.precision)
    parts.append('activation checkpointing ' + ('on' if inputs.activation_checkpointing else 'off'))
    return ', '.join(parts)


def render_text(plan: MemoryPlan) -> str:
    """The plan as an aligned table with a verdict and, if it does not fit, the knob to turn first."""
    inputs, b = plan.run.inputs, plan.breakdown
    s = inputs.shape
    lines = [f'Memory plan for {plan.yaml_path}']
    lines.append(f'  model    {plan.run.source_label}: {count_params(s) / 1e6:,.1f}M parameters, '
                 f'{s.num_layers} layers, '
                 f'hidden {s.hidden_size}, {s.num_attention_heads} heads / {s.num_key_value_heads} KV, '
                 f'FFN {s.intermediate_size}, vocab {s.vocab_size}')
    if inputs.masks is not None:
        lines.append(f'  pruning  {inputs.masks.multipliers // 2} masks: {inputs.masks.log_alphas:,} log-alphas, '
                     f'{inputs.masks.multipliers} multipliers')
    else:
        lines.append('  pruning  none (continued pre-training)')
    if inputs.teacher is not None:
        t = inputs.teacher.shape
        lines.append(f'  teacher  {plan.run.teacher_label}: {count_params(t) / 1e6:,.1f}M parameters, '
                     f'{t.num_layers} layers, weights in {"bf16" if inputs.teacher.weight_bytes == 2 else "fp32"}')
    lines.append(f'  device   {_describe_setup(inputs, plan.budget)}')
    auto = ' (auto: planned at the per-GPU batch)' if plan.run.microbatch_auto else ''
    lines.append(f'  batch    {inputs.global_batch_size} x {inputs.seq_len} = {b.tokens_per_step:,} tokens per step; '
                 f'per {"process" if inputs.device == "cpu" else "GPU"} {b.device_batch_size} samples = '
                 f'{b.microbatches} microbatch(es) of {b.microbatch_size}{auto} '
                 f'({b.tokens_per_microbatch:,} tokens each, gradient accumulation {b.microbatches})')
    moment = {'forward end': 'the end of a forward (autocast casts cached)',
              'backward start': 'the start of a backward'}
    lines.append(f'  peak     at {moment.get(b.phase, b.phase)}')
    labels = _labels(inputs)
    width = max(len(label) for label in labels.values())
    lines.append('')
    lines.append(f'  {"term".ljust(width)}  {"GiB":>8}')
    lines.append(f'  {"-" * width}  {"-" * 8}')
    for name, value in b.terms().items():
        lines.append(f'  {labels[name].ljust(width)}  {value / GIB:8.2f}')
    lines.append(f'  {"-" * width}  {"-" * 8}')
    lines.append(f'  {"total".ljust(width)}  {b.total / GIB:8.2f}')
    lines.append('')
    if plan.budget is None:
        lines.append('No --gpu-mem given: no fit check.')
    elif plan.fits:
        lines.append(f'Fits in {plan.budget / GIB:.1f} GiB ({(plan.budget - b.total) / GIB:.2f} GiB to spare).')
    else:
        lines.append(f'Does not fit in {plan.budget / GIB:.1f} GiB: {b.total / GIB:.2f} GiB needed.')
        rec = plan.recommendation
        if rec is None:
            lines.append('No single knob makes it fit; combine them, or use GPUs with more memory.')
        else:
            lines.append(f'Turn first: {rec.description} (total {rec.breakdown.total / GIB:.2f} GiB, fits)')
            lines.append(f'  shear plan {plan.yaml_path} ... {" ".join(rec.overrides)}')
        others = [o for o in plan.options if o is not rec]
        if others:
            lines.append('Other knobs:')
            for option in others:
                verdict = 'fits' if option.fits else 'does not fit'
                lines.append(f'  {option.description} (total {option.breakdown.total / GIB:.2f} GiB, {verdict})')
    if inputs.device == 'gpu':
        per_node = min(inputs.gpus, GPUS_PER_NODE)
        lines.append(f'Loading: each process builds the whole fp32 source on the CPU before FSDP2 shards it '
                     f'(model.init_device: cpu): {per_node} x {4 * count_params(s) / GIB:.1f} GiB = '
                     f'{per_node * 4 * count_params(s) / GIB:.1f} GiB of host memory on a node of {per_node} GPUs.')
    if plan.export_bytes is not None:
        lines.append(f'shear export of its checkpoint (fp32 weights): {plan.export_bytes / GIB:.1f} GiB of host '
                     'memory, one CPU process.')
    if plan.run.missing_paths:
        lines.append('')
        lines.append('Not found on this machine (the plan reads neither data nor weights): '
                     + '; '.join(plan.run.missing_paths))
    return '\n'.join(lines)


def _option_dict(option: KnobOption) -> dict[str, Any]:
    return {
        'knob': option.knob,
        'description': option.description,
        'overrides': list(option.overrides),
        'total_gib': _gib(option.breakdown.total),
        'fits': option.fits,
    }


def plan_to_dict(plan: MemoryPlan) -> dict[str, Any]:
    """The plan as plain JSON types; sizes in bytes (``terms_bytes``) and GiB (``terms_gib``)."""
    inputs, b = plan.run.inputs, plan.breakdown
    input_dict = dataclasses.asdict(inputs)
    return {
        'yaml': plan.yaml_path,
        'source_shape': plan.run.source_label,
        'inputs': input_dict,
        'parameters': count_params(inputs.shape),
        'tokens_per_step': b.tokens_per_step,
        'tokens_per_microbatch': b.tokens_per_microbatch,
        'device_batch_size': b.device_batch_size,
        'microbatch_size': b.microbatch_size,
        'microbatches': b.microbatches,
        'microbatch_auto': plan.run.microbatch_auto,
        'phase': b.phase,
        'terms_bytes': b.terms(),
        'terms_gib': {name: _gib(value) for name, value in b.terms().items()},
        'total_bytes': b.total,
        'total_gib': _gib(b.total),
        'budget_gib': None if plan.budget is None else _gib(plan.budget),
        'fits': plan.fits,
        'export_host_gib': None if plan.export_bytes is None else _gib(plan.export_bytes),
        'recommendation': None if plan.recommendation is None else _option_dict(plan.recommendation),
        'options': [_option_dict(option) for option in plan.options],
        'missing_paths': list(plan.run.missing_paths),
    }
