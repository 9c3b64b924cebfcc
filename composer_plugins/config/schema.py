"""Typed schema of a run YAML (`composer train.py yamls/<run>.yaml`).

The keys follow llm-foundry's train config, so a user's existing habits carry over;
this schema accepts the subset this recipe supports and rejects anything else by name
before any heavy import happens. After validation, :func:`to_dict` gives back the
plain mapping that llm-foundry's ``train`` entry point receives.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

from composer_plugins.data.domain_weights import read_domain_weights
from composer_plugins.errors import ConfigError
from composer_plugins.pruning.config import PruningConfig

TINY_MODEL_PREFIX = 'tiny-'
TimeStr = Union[int, str]


def _looks_like_path(value: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else with a slash is a filesystem path."""
    return value.startswith(('/', '.', '~')) or value.count('/') > 1


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

    def validate(self, path: str) -> None:
        if self.source.startswith(TINY_MODEL_PREFIX):
            return
        expanded = os.path.expanduser(self.source)
        if os.path.isdir(expanded):
            if not os.path.isfile(os.path.join(expanded, 'config.json')):
                raise ConfigError(f'{path}.source: {self.source!r} is a directory without config.json')
            return
        if _looks_like_path(self.source) or os.path.exists(expanded):
            raise ConfigError(
                f'{path}.source: model directory {self.source!r} does not exist '
                '(expected a local HF directory, a hub id, or tiny-llama / tiny-llama-gqa / tiny-mistral / tiny-qwen2)',
            )


@dataclass
class TokenizerConfig:
    """``tokenizer:``: a registered tokenizer name (``byte-level``), a local directory or a hub id."""
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TextDatasetConfig:
    """``*_loader.dataset`` of llm-foundry's ``text`` loader: MDS shards with a ``tokens`` column."""
    local: str
    max_seq_len: int
    remote: Optional[str] = None
    split: Optional[str] = None
    shuffle: bool = False
    shuffle_seed: int = 9176
    shuffle_algo: Optional[str] = None
    num_canonical_nodes: Optional[int] = None
    eos_token_id: Optional[int] = None
    token_encoding_type: Optional[str] = None

    def validate(self, path: str) -> None:
        if self.remote is None:
            shard_dir = os.path.join(self.local, self.split or '')
            if not os.path.isfile(os.path.join(shard_dir, 'index.json')):
                raise ConfigError(
                    f'{path}.local: no MDS index at {os.path.join(shard_dir, "index.json")!r}; '
                    'prepare shards first (see README: data) or set remote',
                )


@dataclass(kw_only=True)
class DataLoaderOptions:
    """The torch ``DataLoader`` keys every loader accepts."""
    drop_last: bool = True
    num_workers: int = 0
    pin_memory: bool = False
    prefetch_factor: Optional[int] = field(default=None, metadata={'keep_none': True})  # torch needs None with 0 workers
    persistent_workers: bool = False
    timeout: int = 0


@dataclass(kw_only=True)
class TextLoaderConfig(DataLoaderOptions):
    """``train_loader`` / ``eval_loader`` with llm-foundry's ``text`` dataloader."""
    name: Literal['text']
    dataset: TextDatasetConfig
    label: Optional[str] = None


@dataclass
class MixtureDatasetConfig:
    """``train_loader.dataset`` of the ``domain_mixture`` loader (``shear prep`` output layout).

    ``<local>/<domain>/<split>`` holds each domain's MDS shards. One update interval is
    ``interval_batches`` global batches (one Composer epoch); ``weights`` are the initial
    domain weights (uniform when omitted), or ``weights_from`` names the domain-weights file
    an earlier stage wrote (``callbacks.dynamic_loading.weights_file``).
    """
    local: str
    domains: list[str]
    max_seq_len: int
    interval_batches: int
    split: str = 'train'
    remote: Optional[str] = None
    weights: Optional[list[float]] = None
    weights_from: Optional[str] = None
    seed: int = 17

    def validate(self, path: str) -> None:
        if self.weights_from is not None:
            if self.weights is not None:
                raise ConfigError(f'{path}.weights_from: set weights or weights_from, not both')
            self.weights = read_domain_weights(self.weights_from, self.domains, f'{path}.weights_from')
        if not self.domains or len(set(self.domains)) != len(self.domains):
            raise ConfigError(f'{path}.domains: got {self.domains}; expected distinct domain names')
        if self.interval_batches <= 0:
            raise ConfigError(f'{path}.interval_batches: got {self.interval_batches}; expected a positive int')
        if self.weights is not None:
            if len(self.weights) != len(self.domains):
                raise ConfigError(
                    f'{path}.weights: {len(self.weights)} values for {len(self.domains)} domains {self.domains}',
                )
            if any(w < 0 for w in self.weights) or abs(sum(self.weights) - 1.0) > 1e-6:
                raise ConfigError(f'{path}.weights: {self.weights} must be non-negative and sum to 1 '
                                  f'(they sum to {sum(self.weights):.6g})')
        if self.remote is None:
            for domain in self.domains:
                index = os.path.join(self.local, domain, self.split, 'index.json')
                if not os.path.isfile(index):
                    raise ConfigError(f'{path}.domains: domain {domain!r} has no MDS index at {index!r}')


@dataclass(kw_only=True)
class MixtureLoaderConfig(DataLoaderOptions):
    """``train_loader`` with this package's ``domain_mixture`` loader (dynamic batch loading)."""
    name: Literal['domain_mixture']
    dataset: MixtureDatasetConfig


LoaderConfig = Union[TextLoaderConfig, MixtureLoaderConfig]


@dataclass
class OptimizerConfig:
    """``optimizer:``: an optimizer from llm-foundry's registry (``decoupled_adamw``, ``adamw`` ...).

    ``lag_lr`` is the learning rate of the log-alphas and of the Lagrange multipliers
    when ``model.pruning`` is set (the paper uses 1.0).
    """
    name: str
    lr: float
    lag_lr: float = 1.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.0


@dataclass
class SchedulerConfig:
    """``scheduler:``: a scheduler from llm-foundry's registry; ``alpha_f`` only for decaying ones."""
    name: str
    t_warmup: TimeStr = '0ba'
    alpha_f: Optional[float] = None
    t_max: Optional[TimeStr] = None


@dataclass
class RunConfig:
    """A whole run: llm-foundry's train keys that this recipe supports."""
    model: ModelConfig
    tokenizer: TokenizerConfig
    train_loader: LoaderConfig
    optimizer: OptimizerConfig
    scheduler: SchedulerConfig
    max_seq_len: int
    max_duration: TimeStr
    global_train_batch_size: int
    device_train_microbatch_size: Union[int, str] = 'auto'
    device_eval_batch_size: int = 4
    eval_loader: Optional[TextLoaderConfig] = None
    eval_loaders: Optional[list[TextLoaderConfig]] = None
    eval_interval: TimeStr = 1
    eval_first: bool = False
    eval_subset_num_batches: int = -1
    seed: int = 17
    precision: Literal['fp32', 'amp_bf16', 'amp_fp16'] = 'fp32'
    run_name: Optional[str] = None
    variables: Optional[dict[str, Any]] = None
    fsdp_config: Optional[dict[str, Any]] = None
    callbacks: Optional[dict[str, Optional[dict[str, Any]]]] = None
    loggers: Optional[dict[str, Optional[dict[str, Any]]]] = None
    algorithms: Optional[dict[str, Optional[dict[str, Any]]]] = None
    progress_bar: bool = False
    log_to_console: bool = True
    console_log_interval: TimeStr = '1ba'
    python_log_level: Optional[str] = 'info'
    log_config: bool = False
    save_folder: Optional[str] = None
    save_interval: TimeStr = '1000ba'
    save_num_checkpoints_to_keep: int = -1
    save_overwrite: bool = False
    save_weights_only: bool = False
    autoresume: bool = False
    load_path: Optional[str] = None
    load_weights_only: bool = False
    dist_timeout: float = 600.0

    def validate(self, path: str) -> None:
        if self.global_train_batch_size <= 0:
            raise ConfigError(f'global_train_batch_size: got {self.global_train_batch_size}; expected a positive int')
        if self.max_seq_len <= 0:
            raise ConfigError(f'max_seq_len: got {self.max_seq_len}; expected a positive int')
        if self.autoresume and (self.save_folder is None or self.run_name is None):
            raise ConfigError('autoresume: true needs both save_folder and run_name to be set')
        if self.eval_loader is not None and self.eval_loaders is not None:
            raise ConfigError('eval_loader and eval_loaders: set one of them, not both')
        if self.model.pruning is not None:
            if self.optimizer.name != 'adamw':
                raise ConfigError(
                    f"optimizer.name: got {self.optimizer.name!r}; model.pruning needs 'adamw' "
                    '(the multipliers use gradient ascent, maximize=True)',
                )
            if 'pruning_monitor' not in (self.callbacks or {}):
                raise ConfigError(
                    'callbacks.pruning_monitor: required with model.pruning (it feeds the step to the '
                    'Lagrangian warm-up, clamps the gates and logs l0/* metrics)',
                )
        if isinstance(self.train_loader, MixtureLoaderConfig):
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
