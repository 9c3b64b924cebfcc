"""Typed schema of a run YAML (`shear train <run>.yaml`, `composer train.py yamls/<run>.yaml`).

A run YAML is llm-foundry's train YAML. This schema types the blocks the recipe owns and the
keys its checks read, hands every other llm-foundry key on as written, and rejects a key that
is neither by name before any heavy import happens. After validation,
:func:`~composer_plugins.config.foundry.to_foundry_config` gives the plain mapping that
llm-foundry's ``train`` builds the Trainer from.

The loaders' schema is in :mod:`~composer_plugins.config.loaders` (with the per-domain
``eval_loaders`` short form in :mod:`~composer_plugins.config.eval_loaders`), the callbacks'
in :mod:`~composer_plugins.config.callback_schemas`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Optional, Union

from composer_plugins.config.callback_args import ScalingLawRefs, SourceOffsetRefs
from composer_plugins.config.callback_schemas import typed_callbacks
from composer_plugins.config.eval_loaders import eval_loader_list
from composer_plugins.config.foundry_keys import any_key, check_foundry_key, foundry_train_keys
from composer_plugins.config.loaders import LoaderConfig, MixtureLoaderConfig, TextLoaderConfig
from composer_plugins.config.model_names import check_model_name, check_tokenizer_name
from composer_plugins.config.registry_args import OPTIMIZER_ARGS, SCHEDULER_ARGS, check_registry_args
from composer_plugins.config.run_folders import check_load_path, check_save_folder
from composer_plugins.data.data_model_check import check_manifest_vocab
from composer_plugins.data.domain_weights import per_domain_values
from composer_plugins.distillation.config import DistillationConfig
from composer_plugins.errors import ConfigError
from composer_plugins.models.tiny import TINY_MODEL_NAMES
from composer_plugins.pruning.config import PruningConfig, require_armed
from composer_plugins.pruning.shapes import ModelShape
from composer_plugins.registry import ENTRY_POINTS

TimeStr = Union[int, str]


@dataclass
class ModelConfig:
    """``model:``: which Hugging Face causal LM to train.

    ``source`` is a local HF directory, a hub id (only where a network exists) or a
    named tiny config for tests (``tiny-llama``, ``tiny-llama-gqa``, ``tiny-mistral``,
    ``tiny-qwen2``, randomly initialised).
    """
    source: str
    name: Literal['shear_causal_lm'] = 'shear_causal_lm'
    pretrained: bool = True
    config_overrides: dict[str, Any] = field(default_factory=dict)
    attn_implementation: Literal['sdpa', 'eager', 'flash_attention_2'] = 'sdpa'
    pruning: Optional[PruningConfig] = None
    init_device: Literal['cpu', 'meta', 'mixed'] = 'cpu'

    def validate(self, path: str) -> None:
        if self.init_device != 'cpu':
            raise ConfigError(f"{path}.init_device: got {self.init_device!r}; only 'cpu': every rank loads the "
                              "source's weights (the importance init and the export read them), and FSDP2 then "
                              'shards them')
        check_model_name(self.source, f'{path}.source', (
            f'model directory {self.source!r} does not exist (expected a local HF directory, a hub id, '
            f'or {" / ".join(TINY_MODEL_NAMES)})'))


@dataclass
class TokenizerConfig:
    """``tokenizer:``: a registered tokenizer name (``byte-level``), a local directory or a hub id."""
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def validate(self, path: str) -> None:
        check_tokenizer_name(self.name, f'{path}.name', tuple(ENTRY_POINTS['tokenizers']))


def _source_shape(model: ModelConfig) -> Optional[ModelShape]:
    """The source's shape from its config alone (no weights, no torch), or None where that needs the model.

    A source whose config is not readable offline (a hub id outside the cache) is checked when it is built.
    """
    from composer_plugins.models.source_shape import quick_source_shape

    try:
        return quick_source_shape(model.source, model.config_overrides)
    except ConfigError as err:  # e.g. a bias layout that structured pruning does not support
        raise ConfigError(f'model.source {model.source!r}: {err}') from None


def _check_target_shape(model: ModelConfig, source: Optional[ModelShape]) -> None:
    """``model.pruning.target`` against the source's shape: an error in seconds, before the model is built."""
    from composer_plugins.pruning.shapes import validate_target

    if source is None:
        return
    try:
        validate_target(source, model.pruning.target.to_shape(source))
    except (ConfigError, ValueError) as err:
        raise ConfigError(f'model.pruning.target: {err} (source {model.source})') from None


@dataclass
class OptimizerConfig:
    """``optimizer:``: the weights' optimizer, any of llm-foundry's registry (``decoupled_adamw``,
    ``adamw``, ``decoupled_lionw`` ...). Unset ``betas`` / ``eps`` / ``weight_decay`` take the
    optimizer's defaults; any other key is the optimizer's argument, handed on.

    With ``model.pruning`` the log-alphas and the multipliers are not in it: they belong to
    ``callbacks.mask_learning`` and ``callbacks.lagrangian``, each with its own rate
    (``lag_lr`` is therefore an error naming those keys).
    """
    name: str
    lr: float
    betas: Optional[list[float]] = None
    eps: Optional[float] = None
    weight_decay: Optional[float] = None
    lag_lr: Optional[float] = None
    options: dict[str, Any] = field(default_factory=dict, metadata={'passthrough': any_key})
    """Any other argument of the optimizer, handed on (its constructor checks it)."""

    def validate(self, path: str) -> None:
        if self.lag_lr is not None:
            raise ConfigError(f'{path}.lag_lr: removed; the log-alphas learn in callbacks.mask_learning '
                              '(lr) and the Lagrange multipliers in callbacks.lagrangian (lr)')
        given = {'lr': self.lr, 'betas': self.betas, 'eps': self.eps, 'weight_decay': self.weight_decay}
        check_registry_args(OPTIMIZER_ARGS, self.name, [*(k for k, v in given.items() if v is not None),
                                                        *self.options], path)


@dataclass
class SchedulerConfig:
    """``scheduler:``: a scheduler from llm-foundry's registry; ``alpha_f`` only for decaying ones."""
    name: str
    t_warmup: TimeStr = '0ba'
    alpha_f: Optional[float] = None
    t_max: Optional[TimeStr] = None
    options: dict[str, Any] = field(default_factory=dict, metadata={'passthrough': any_key})
    """Any other argument of the scheduler, handed on (its constructor checks it)."""

    def validate(self, path: str) -> None:
        given = {'t_warmup': self.t_warmup, 'alpha_f': self.alpha_f, 't_max': self.t_max}
        check_registry_args(SCHEDULER_ARGS, self.name, [*(k for k, v in given.items() if v is not None),
                                                        *self.options], path)


DtypeName = Literal['fp32', 'float32', 'bf16', 'bfloat16', 'fp16', 'float16']
LOW_PRECISION_DTYPES = ('bf16', 'bfloat16', 'fp16', 'float16')


@dataclass
class MixedPrecisionDtypes:
    """``fsdp_config.mixed_precision`` as explicit dtypes (a null dtype means the parameter's own, fp32).

    ``param_dtype``: what FSDP2 all-gathers and computes with; ``reduce_dtype``: what gradients
    are reduce-scattered in. (FSDP2 leaves buffers alone, so there is no ``buffer_dtype``.)
    """
    param_dtype: Optional[DtypeName] = None
    reduce_dtype: Optional[DtypeName] = None


@dataclass
class FsdpConfig:
    """``fsdp_config:``: Composer's FSDP2 settings (``composer.utils.parallelism.FSDP2Config``).

    FSDP2 is selected by the environment, ``FSDP_VERSION=2`` (the ``launch/`` scripts export it).
    It always shards every parameter over all ranks (one data-parallel mesh); each decoder
    layer and the pruner are FSDP units (``ShearCausalLM.fsdp_wrap_fn``). Composer ignores any
    other key with only a warning: FSDP1 keys such as ``sharding_strategy``, ``cpu_offload``,
    ``sync_module_states`` (set automatically), ``activation_checkpointing_reentrant``,
    ``limit_all_gathers`` or ``use_orig_params`` do nothing under FSDP2, and neither would a
    misspelled key, so here both are errors naming the key.

    Attributes:
        state_dict_type: ``sharded``: each checkpoint is a ``torch.distributed.checkpoint``
            folder ``ep{epoch}-ba{batch}`` that every rank writes its shard into and that is
            resharded on load, so a run resumes on another number of ranks. ``full``: one
            ``.pt`` file gathered on rank 0. Written out (FSDP2's own default is ``sharded``)
            because llm-foundry reads this key, missing meaning ``full``, to name the
            ``latest-sharded-rank{rank}`` pointer that autoresume follows.
        mixed_precision: ``FULL`` (parameters and gradient reduction in fp32; ``precision:
            amp_bf16`` still runs the matmuls in bf16 under autocast), ``DEFAULT`` (parameters
            cast to the ``precision`` dtype, gradients reduced in fp32), ``PURE`` (both in the
            ``precision`` dtype), or explicit dtypes. Null means Composer's ``DEFAULT``.
        reshard_after_forward: ``true`` frees each unit's gathered parameters after its forward
            and gathers them again for backward (full sharding, ZeRO-3); ``false`` keeps them
            until backward (like FSDP1's ``SHARD_GRAD_OP``); an int reshards to that many ranks.
        activation_checkpointing: recompute each decoder layer's activations in backward
            (``ShearCausalLM.activation_checkpointing_fn`` picks the layers).
        activation_cpu_offload: keep those layers' saved activations in CPU memory.
        load_monolith_rank0_only: read a ``full`` (monolithic) ``load_path`` on rank 0 only and
            broadcast it; needs ``state_dict_type: full``.
        verbose: log the sharded model and these settings at start-up.
    """
    REFUSED_KEYS: ClassVar[dict[str, str]] = {key: (
        "an FSDP1 key (llm-foundry's older YAMLs); this recipe shards with FSDP2 (fully_shard), which would drop "
        'it with a warning and do something else than asked; see fsdp_config in the README') for key in (
        'sharding_strategy', 'cpu_offload', 'sync_module_states', 'activation_checkpointing_reentrant',
        'limit_all_gathers', 'use_orig_params', 'forward_prefetch', 'backward_prefetch', 'auto_wrap')}
    state_dict_type: Literal['sharded', 'full'] = 'sharded'
    mixed_precision: Optional[Union[Literal['DEFAULT', 'PURE', 'FULL'], MixedPrecisionDtypes]] = None
    reshard_after_forward: Optional[Union[bool, int]] = None
    activation_checkpointing: Optional[bool] = None
    activation_cpu_offload: Optional[bool] = None
    load_monolith_rank0_only: Optional[bool] = None
    verbose: Optional[bool] = None

    def validate(self, path: str) -> None:
        if isinstance(self.reshard_after_forward, int) and not isinstance(self.reshard_after_forward, bool):
            if self.reshard_after_forward < 1:
                raise ConfigError(f'{path}.reshard_after_forward: got {self.reshard_after_forward}; '
                                  'expected true, false or a positive number of ranks')
        if self.load_monolith_rank0_only and self.state_dict_type != 'full':
            raise ConfigError(f'{path}.load_monolith_rank0_only: needs state_dict_type: full '
                              f'(got {self.state_dict_type!r})')

    def describe_mixed_precision(self) -> str:
        """``mixed_precision`` as written in YAML, for messages."""
        mixed = self.mixed_precision
        if mixed is None:
            return "null (Composer's 'DEFAULT')"
        if isinstance(mixed, MixedPrecisionDtypes):
            return f'{{param_dtype: {mixed.param_dtype}, reduce_dtype: {mixed.reduce_dtype}}}'
        return repr(mixed)

    def low_precision_params(self, precision: str) -> bool:
        """Whether FSDP2 casts parameters below fp32 in forward and backward under ``precision``."""
        mixed = self.mixed_precision
        if isinstance(mixed, MixedPrecisionDtypes):
            return mixed.param_dtype in LOW_PRECISION_DTYPES
        return precision != 'fp32' and mixed != 'FULL'  # DEFAULT, PURE and null cast to `precision`


@dataclass
class RunConfig:
    """A whole run: llm-foundry's train config, with the blocks this recipe owns typed and checked.

    Typed here: what is the recipe's (``model``: ``shear_causal_lm``, the loaders, ``callbacks``
    of this package, ``distillation``) and the llm-foundry keys that its checks read. Every other
    key of llm-foundry's ``TrainConfig`` (:func:`~composer_plugins.config.foundry_keys.foundry_train_keys`)
    is kept in ``foundry_keys`` as written and handed on, so llm-foundry checks it and applies its
    own defaults; the defaults below are llm-foundry's too. A key llm-foundry accepts but this recipe
    cannot honour is one error with the reason (:mod:`~composer_plugins.config.foundry_keys`).

    Two keys are read in :meth:`validate`, after the train loader is known:

    * ``eval_loaders``: a list of ``text`` loaders (llm-foundry's), or the short form
      ``{per_domain: {split: eval, num_workers: 2, ...}}``, which stands for one ``text``
      evaluator per ``domain_mixture`` training domain, labelled with the domain, reading
      ``<train_loader.dataset.local>/<domain>/<split>``
      (:class:`~composer_plugins.config.eval_loaders.PerDomainEvalConfig`). After validation it is
      always the explicit list of :class:`TextLoaderConfig` (or None).
    * ``callbacks``: ``{name: arguments}``. The arguments of this package's callbacks are checked
      against their dataclasses and kept as them
      (:data:`~composer_plugins.config.callback_schemas.CALLBACK_SCHEMAS`: ``callbacks['sample_log']``
      is a :class:`~composer_plugins.config.callback_args.SampleLogConfig`); any other callback's
      (Composer's ``speed_monitor``, ``lr_monitor`` ...) stay the mapping as written.
    """
    model: ModelConfig
    tokenizer: TokenizerConfig
    train_loader: LoaderConfig
    optimizer: OptimizerConfig
    scheduler: SchedulerConfig
    max_seq_len: int
    max_duration: TimeStr
    global_train_batch_size: int
    device_eval_batch_size: int
    device_train_microbatch_size: Union[int, str] = 'auto'
    eval_loader: Optional[TextLoaderConfig] = None
    eval_loaders: Any = None  # list[TextLoaderConfig] or {per_domain: ...}; a list after validate
    eval_interval: TimeStr = 1
    precision: Literal['fp32', 'amp_bf16', 'amp_fp16', 'amp_fp8'] = 'amp_bf16'
    run_name: Optional[str] = None
    fsdp_config: Optional[FsdpConfig] = None
    callbacks: Optional[dict[str, Any]] = None  # ours: their dataclasses after validate; others: mappings
    loggers: Optional[dict[str, Optional[dict[str, Any]]]] = None
    algorithms: Optional[dict[str, Optional[dict[str, Any]]]] = None
    distillation: Optional[DistillationConfig] = None
    python_log_level: Optional[str] = 'debug'
    save_folder: Optional[str] = None
    save_interval: TimeStr = '1000ba'
    save_overwrite: bool = False
    autoresume: bool = False
    load_path: Optional[str] = None
    foundry_keys: dict[str, Any] = field(default_factory=dict, metadata={'passthrough': foundry_train_keys})
    """The other keys of llm-foundry's train config, as written (llm-foundry checks them)."""

    def data_folders(self) -> list[tuple[str, str]]:
        """``(key, local folder)`` of every local dataset the run reads: the train loader's, then the evaluators'."""
        folders = []
        if self.train_loader.dataset.remote is None:
            folders.append(('train_loader.dataset.local', self.train_loader.dataset.local))
        evals = self.eval_loaders or ([self.eval_loader] if self.eval_loader else [])
        for i, loader in enumerate(evals):
            if loader.dataset.remote is None:
                key = f'eval_loaders[{i}].dataset.local' if self.eval_loaders else 'eval_loader.dataset.local'
                folders.append((key, loader.dataset.local))
        return folders

    def validate(self, path: str) -> None:
        for key in self.foundry_keys:
            check_foundry_key(key, pruning=self.model.pruning is not None)
        self.eval_loaders = eval_loader_list(self.eval_loaders, self.train_loader)
        self.callbacks = typed_callbacks(self.callbacks)
        if self.global_train_batch_size <= 0:
            raise ConfigError(f'global_train_batch_size: got {self.global_train_batch_size}; expected a positive int')
        if self.max_seq_len <= 0:
            raise ConfigError(f'max_seq_len: got {self.max_seq_len}; expected a positive int')
        if self.autoresume and (self.save_folder is None or self.run_name is None):
            raise ConfigError('autoresume: true needs both save_folder and run_name to be set')
        if self.eval_loader is not None and self.eval_loaders is not None:
            raise ConfigError('eval_loader and eval_loaders: set one of them, not both')
        check_save_folder(self.save_folder, self.run_name, autoresume=self.autoresume,
                          save_overwrite=self.save_overwrite, load_path=self.load_path)
        check_load_path(self.load_path)
        if self.distillation is not None:
            if 'distillation' in (self.algorithms or {}):
                raise ConfigError('algorithms.distillation: configure distillation with the top-level '
                                  'distillation block (teacher, alpha, temperature, top_k)')
            self.distillation.resolve_teacher(self.model.source, self.model.pruning is not None, 'distillation')
        source = _source_shape(self.model)
        if self.model.pruning is not None:
            _check_target_shape(self.model, source)
            require_armed(set(self.callbacks or {}))
            if self.precision == 'amp_fp16':
                raise ConfigError(
                    'precision: amp_fp16 is not supported with model.pruning: the masks and the multipliers have '
                    "optimizers of their own, which Composer's gradient scaler neither unscales nor skips on an "
                    'overflow; use amp_bf16 (no scaler needed) or fp32')
            if self.fsdp_config is not None and self.fsdp_config.low_precision_params(self.precision):
                raise ConfigError(
                    f'fsdp_config.mixed_precision: got {self.fsdp_config.describe_mixed_precision()} with '
                    f'precision {self.precision} and model.pruning: FSDP2 would cast the pruner too (one policy '
                    'for every unit), so the gates, their noise and the Lagrangian would run in low precision and '
                    "the masks written at evaluation could differ from the exported ones. Use 'FULL': parameters "
                    'stay fp32, and precision amp_bf16 / amp_fp16 still runs the matmuls in half precision',
                )
        check_manifest_vocab(self.data_folders(), self.model.source, source.vocab_size if source else None)
        if isinstance(self.train_loader, MixtureLoaderConfig):
            dynamic = (self.callbacks or {}).get('dynamic_loading')
            if isinstance(getattr(dynamic, 'ref_losses', None), (ScalingLawRefs, SourceOffsetRefs)):
                dynamic.ref_losses.check_domains(self.train_loader.dataset.domains,
                                                 'callbacks.dynamic_loading.ref_losses')
            elif dynamic is not None and dynamic.ref_losses is not None:
                per_domain_values(dynamic.ref_losses, self.train_loader.dataset.domains,
                                  'callbacks.dynamic_loading.ref_losses')
            interval = f'{self.train_loader.dataset.interval_batches}ba'
            if str(self.eval_interval) != interval:
                raise ConfigError(
                    f'eval_interval: got {self.eval_interval!r}; the domain_mixture loader needs {interval!r} '
                    '(train_loader.dataset.interval_batches) so that every interval ends with an evaluation',
                )
        if isinstance(self.device_train_microbatch_size, str) and self.device_train_microbatch_size != 'auto':
            raise ConfigError(
                f'device_train_microbatch_size: got {self.device_train_microbatch_size!r}; expected an int or "auto"',
            )
