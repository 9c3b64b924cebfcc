"""A run YAML plus ``key=value`` overrides turned into :class:`~composer_plugins.tools.planning.memory.MemoryInputs`.

The YAML is validated exactly as ``composer train.py`` validates it (unknown keys, types,
pruning rules), with one difference: planning happens where the data and the model
weights usually are not. A data folder, a ``weights_from`` file or a model directory that
does not exist here is replaced by a stub for validation only, and reported in
:attr:`PlannedRun.missing_paths`; what does exist is checked as usual. The model's shape
comes from its config alone (:mod:`composer_plugins.models.source_shape`).
"""
from __future__ import annotations

import copy
import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from composer_plugins.config.eval_loaders import expand_raw_eval_loaders
from composer_plugins.config.load import load_yaml_with_overrides
from composer_plugins.config.model_names import looks_like_path
from composer_plugins.config.schema import RunConfig
from composer_plugins.config.typed import from_dict
from composer_plugins.distillation.config import SOURCE_TEACHER
from composer_plugins.errors import ConfigError
from composer_plugins.models.source_shape import resolve_source_shape
from composer_plugins.tools.planning.memory import Device, FsdpInputs, MaskInputs, MemoryInputs, TeacherInputs

log = logging.getLogger(__name__)

_STUB_MODEL = 'tiny-llama'


@dataclass(frozen=True)
class PlannedRun:
    """What ``shear plan`` knows about a run.

    Attributes:
        inputs: the memory inputs.
        config: the validated run config (data paths that do not exist here are stubs).
        source_label: where the model shape came from (a known-shape name, a path, a tiny name).
        missing_paths: data folders, weight files or model directories not found on this machine.
        microbatch_auto: ``device_train_microbatch_size: auto`` (planned at the per-GPU batch).
        teacher_label: where the distillation teacher's shape came from (None: no teacher).
        seq_len_key: the override that changes the sequence length everywhere
            (``variables.max_seq_len`` when the YAML interpolates it, else ``max_seq_len``).
    """
    inputs: MemoryInputs
    config: RunConfig
    source_label: str
    missing_paths: tuple[str, ...]
    microbatch_auto: bool
    seq_len_key: str
    teacher_label: Optional[str] = None


def plan_run(
    yaml_path: str,
    overrides: Sequence[str] = (),
    gpus: int = 1,
    device: Device = 'gpu',
    source_shape: Optional[str] = None,
) -> PlannedRun:
    """Load ``yaml_path`` with ``overrides`` and build the memory inputs of the run on ``gpus`` GPUs.

    Raises:
        ConfigError: a bad YAML key or value, an fsdp_config the formula does not model, ``--gpus`` < 1.
        ShearError: the model's shape cannot be found offline.
    """
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise ConfigError(f'--gpus: got {gpus!r}; expected a positive int')
    raw = load_yaml_with_overrides(yaml_path, overrides)
    config, missing = _validate_without_data(raw)
    model = config.model
    source = raw['model']['source']
    shape, label = resolve_source_shape(source, model.config_overrides, source_shape)
    masks = _mask_inputs(config, shape)
    microbatch_auto = config.device_train_microbatch_size == 'auto'
    microbatch = config.global_train_batch_size // gpus if microbatch_auto else config.device_train_microbatch_size
    fsdp = _fsdp_inputs(config.fsdp_config)
    precision = config.precision
    if device == 'cpu':
        if fsdp is not None:
            log.warning('--device cpu: fsdp_config is ignored (one process, no sharding)')
            fsdp = None
        if precision != 'fp32':
            log.warning('--device cpu: precision %s is planned as fp32', precision)
            precision = 'fp32'
    teacher, teacher_label = _teacher_inputs(config, raw, shape, label, precision)
    inputs = MemoryInputs(
        shape=shape,
        masks=masks,
        global_batch_size=config.global_train_batch_size,
        microbatch_size=max(microbatch, 1),
        seq_len=config.max_seq_len,
        gpus=gpus,
        device=device,
        precision=precision,
        fsdp=fsdp,
        attn_implementation=model.attn_implementation,
        optimizer_states=_optimizer_states(config.optimizer.name),
        teacher=teacher,
    )
    seq_len_key = 'variables.max_seq_len' if _interpolates_seq_len(yaml_path) else 'max_seq_len'
    return PlannedRun(inputs, config, label, tuple(missing), microbatch_auto, seq_len_key, teacher_label)


def _teacher_inputs(config: RunConfig, raw: dict[str, Any], shape, label: str,
                    precision: str) -> tuple[Optional[TeacherInputs], Optional[str]]:
    """The distillation teacher's shape (``source``: the pruned model, or the export's recorded source)."""
    if config.distillation is None:
        return None, None
    weight_bytes = 2 if precision == 'amp_bf16' else 4
    teacher = raw['distillation']['teacher']
    if teacher == SOURCE_TEACHER and config.model.pruning is not None:
        return TeacherInputs(shape, weight_bytes), label
    if teacher == SOURCE_TEACHER or os.path.isdir(os.path.expanduser(teacher)) or teacher.startswith('tiny-'):
        teacher = config.distillation.resolve_teacher(raw['model']['source'], config.model.pruning is not None,
                                                      'distillation')
    teacher_shape, teacher_label = resolve_source_shape(teacher)
    return TeacherInputs(teacher_shape, weight_bytes), teacher_label


def _validate_without_data(raw: dict[str, Any]) -> tuple[RunConfig, list[str]]:
    """``from_dict(RunConfig, raw)`` with stubs for the paths that do not exist on this machine."""
    stubbed = expand_raw_eval_loaders(copy.deepcopy(raw))  # per_domain as the list: each domain's eval is stubbed
    missing: list[str] = []
    with tempfile.TemporaryDirectory(prefix='shear-plan-') as stub_root:
        loaders = [('train_loader', stubbed.get('train_loader'))]
        loaders.append(('eval_loader', stubbed.get('eval_loader')))
        eval_loaders = stubbed.get('eval_loaders')
        if isinstance(eval_loaders, list):
            loaders += [(f'eval_loaders[{i}]', loader) for i, loader in enumerate(eval_loaders)]
        for index, (path, loader) in enumerate(loaders):
            if isinstance(loader, dict) and isinstance(loader.get('dataset'), dict):
                stub = os.path.join(stub_root, str(index))
                missing += _stub_dataset(loader['dataset'], stub, f'{path}.dataset')
        model = stubbed.get('model')
        if isinstance(model, dict) and isinstance(model.get('source'), str):
            source = model['source']
            if looks_like_path(source) and not os.path.isdir(os.path.expanduser(source)):
                # the shape is resolved separately (source_shape.py); an empty config.json passes the
                # name check and leaves the target-against-source check to that shape
                model['source'] = _empty_model_dir(stub_root)
                missing.append(f'model.source: {source}')
        tokenizer = stubbed.get('tokenizer')
        if isinstance(tokenizer, dict) and isinstance(tokenizer.get('name'), str):
            name = tokenizer['name']
            if looks_like_path(name) and not os.path.isdir(os.path.expanduser(name)):
                tokenizer['name'] = 'byte-level'  # the plan never tokenizes
                missing.append(f'tokenizer.name: {name}')
        missing += _stub_calibration(stubbed.get('callbacks'), stub_root)
        # planning writes nothing: the checks of the run's output folder (existing checkpoints) do not apply
        stubbed['save_folder'], stubbed['autoresume'] = None, False
        distillation = stubbed.get('distillation')
        if isinstance(distillation, dict) and isinstance(distillation.get('teacher'), str):
            teacher = distillation['teacher']
            if looks_like_path(teacher) and not os.path.isdir(os.path.expanduser(teacher)):
                distillation['teacher'] = _STUB_MODEL  # its shape is resolved from the name
                missing.append(f'distillation.teacher: {teacher}')
        config = from_dict(RunConfig, stubbed)
    for item in missing:
        log.warning('not found on this machine: %s', item)
    return config, missing


def _empty_model_dir(stub_root: str) -> str:
    folder = os.path.join(stub_root, 'model')
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, 'config.json'), 'w', encoding='utf-8') as f:
        f.write('{}')
    return folder


def _stub_calibration(callbacks: Any, stub_root: str) -> list[str]:
    """Point ``callbacks.mask_learning.calibration.data`` at ``stub_root`` if it does not exist here."""
    calibration = (callbacks or {}).get('mask_learning', {}) if isinstance(callbacks, dict) else {}
    calibration = calibration.get('calibration') if isinstance(calibration, dict) else None
    if not isinstance(calibration, dict) or not isinstance(calibration.get('data'), str):
        return []
    data = calibration['data']
    if os.path.isdir(os.path.expanduser(data)):
        return []
    calibration['data'] = stub_root
    return [f'callbacks.mask_learning.calibration.data: {data}']


def _stub_dataset(dataset: dict[str, Any], stub: str, path: str) -> list[str]:
    """Point ``dataset.local`` at ``stub`` (with empty MDS indexes) if its own indexes are missing."""
    local = dataset.get('local')
    if dataset.get('remote') is not None or not isinstance(local, str):
        return []
    missing = []
    domains = dataset.get('domains')
    if isinstance(domains, list) and all(isinstance(d, str) for d in domains):  # domain_mixture
        split = dataset.get('split', 'train')
        wanted = [os.path.join(domain, str(split)) for domain in domains]
        weights_from = dataset.get('weights_from')
        if isinstance(weights_from, str) and not os.path.isfile(weights_from):
            missing.append(f'{path}.weights_from: {weights_from}')
            if dataset.get('weights') is None:
                dataset.pop('weights_from')
    else:
        split = dataset.get('split')
        wanted = [str(split) if split is not None else '']
    if all(os.path.isfile(os.path.join(local, sub, 'index.json')) for sub in wanted):
        return missing
    for sub in wanted:
        os.makedirs(os.path.join(stub, sub), exist_ok=True)
        with open(os.path.join(stub, sub, 'index.json'), 'w') as f:
            f.write('{"version": 2, "shards": []}')
    dataset['local'] = stub
    return [f'{path}.local: {local}', *missing]


def _mask_inputs(config: RunConfig, shape) -> Optional[MaskInputs]:
    pruning = config.model.pruning
    if pruning is None:
        return None
    from composer_plugins.pruning.masks import build_mask_specs, default_mask_types
    target = pruning.target.to_shape(shape)
    mask_types = pruning.mask_types if pruning.mask_types is not None else default_mask_types(shape)
    specs = build_mask_specs(shape, target, mask_types)
    return MaskInputs.from_mask_shapes({spec.name: spec.shape for spec in specs})


def _fsdp_inputs(fsdp_config: Any) -> Optional[FsdpInputs]:
    """The memory-relevant fields of the validated ``fsdp_config`` (FSDP2; None = DDP / one process)."""
    if fsdp_config is None:
        return None
    if getattr(fsdp_config, 'activation_cpu_offload', None):
        raise ConfigError('fsdp_config.activation_cpu_offload: offloading to CPU is not modelled by shear plan')
    mixed = getattr(fsdp_config, 'mixed_precision', None)
    param_dtype = reduce_dtype = None
    if mixed is None:
        mixed = 'DEFAULT'  # Composer's default
    elif not isinstance(mixed, str):  # explicit dtypes
        param_dtype, reduce_dtype = mixed.param_dtype, mixed.reduce_dtype
        mixed = 'CUSTOM'
    reshard = getattr(fsdp_config, 'reshard_after_forward', None)
    return FsdpInputs(
        reshard_after_forward=True if reshard is None else reshard,
        mixed_precision=mixed,
        param_dtype=param_dtype,
        reduce_dtype=reduce_dtype,
        activation_checkpointing=bool(getattr(fsdp_config, 'activation_checkpointing', None)),
    )


def _optimizer_states(name: str) -> int:
    """fp32 state tensors per parameter: Adam-style 2, Lion / SGD with momentum 1."""
    lowered = name.lower()
    if 'adam' in lowered:
        return 2
    if 'lion' in lowered or 'sgd' in lowered:
        return 1
    log.warning('optimizer %s: assuming 2 state tensors per parameter, as AdamW', name)
    return 2


def _interpolates_seq_len(yaml_path: str) -> bool:
    """The YAML defines ``variables.max_seq_len`` (so one override changes loaders and model alike)."""
    from omegaconf import OmegaConf
    raw = OmegaConf.load(yaml_path)
    variables = raw.get('variables') or {}
    return 'max_seq_len' in variables
