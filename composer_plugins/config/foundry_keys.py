"""The top-level keys of llm-foundry's train config, read from the installed llm-foundry without importing it.

A run YAML is llm-foundry's train YAML: every key of llm-foundry's ``TrainConfig`` that this
recipe does not type itself is handed on as written (:class:`~composer_plugins.config.schema.RunConfig`
keeps them in ``foundry_keys``), with llm-foundry's defaults. Importing llm-foundry imports torch
(seconds), so :func:`foundry_train_keys` parses the dataclass out of ``llmfoundry/utils/config_utils.py``
with :mod:`ast`: the list cannot drift from the installed llm-foundry, and a misspelled key
still fails in about a second.

:data:`NOT_SUPPORTED` names the keys llm-foundry accepts that this recipe cannot honour, each
with its reason; :data:`NOT_SUPPORTED_WITH_PRUNING` those it cannot honour in a pruning run.
"""
from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

from composer_plugins.errors import ConfigError

NOT_SUPPORTED: dict[str, str] = {
    'device_train_batch_size': 'llm-foundry computes it from global_train_batch_size and the number of ranks',
    'device_train_grad_accum': 'llm-foundry computes it from global_train_batch_size and device_train_microbatch_size',
    'n_gpus': 'llm-foundry reads it from the launcher (WORLD_SIZE)',
    'icl_tasks_str': 'llm-foundry fills it from icl_tasks; set icl_tasks',
    'eval_gauntlet_str': 'llm-foundry fills it from eval_gauntlet; set eval_gauntlet',
}
"""``{key: why}`` for llm-foundry keys that a run YAML must not set."""

NOT_SUPPORTED_WITH_PRUNING: dict[str, str] = {
    'tp_config': ('tensor parallelism would split the heads and FFN channels that a mask keeps or drops whole '
                  'across ranks; a pruning run shards with FSDP2 only (fsdp_config)'),
    'only_hf_checkpoint': ('the Hugging Face checkpoint of a pruning run is the full-size source with its masks '
                           'unapplied; `shear export` writes the pruned model'),
    'compile_config': ('torch.compile would trace the gate sampling of one batch; the masks change every batch '
                       'and are applied by forward hooks'),
}
"""``{key: why}`` for llm-foundry keys that a run with ``model.pruning`` must not set."""


def _foundry_class(module: str, name: str) -> ast.ClassDef:
    """The class ``name`` parsed from ``llmfoundry/<module>`` of the installed llm-foundry (nothing imported)."""
    spec = importlib.util.find_spec('llmfoundry')  # finds the package without importing it (or torch)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError('llm-foundry is not installed: install this package with `make install`')
    source = Path(next(iter(spec.submodule_search_locations))) / module
    tree = ast.parse(source.read_text(encoding='utf-8'), filename=str(source))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise ConfigError(f'{source}: no class {name}; this llm-foundry release is not supported')


@functools.lru_cache(maxsize=1)
def foundry_train_keys() -> frozenset[str]:
    """The field names of ``llmfoundry.utils.config_utils.TrainConfig`` in the installed llm-foundry."""
    node = _foundry_class('utils/config_utils.py', 'TrainConfig')
    return frozenset(item.target.id for item in node.body
                     if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name))


@functools.lru_cache(maxsize=1)
def foundry_text_dataset_keys() -> frozenset[str]:
    """The arguments of llm-foundry's ``StreamingTextDataset`` (the ``text`` loader's ``dataset:`` keys)."""
    node = _foundry_class('data/text_data.py', 'StreamingTextDataset')
    init = next(item for item in node.body if isinstance(item, ast.FunctionDef) and item.name == '__init__')
    set_by_foundry = {'self', 'tokenizer', 'batch_size'}
    return frozenset(arg.arg for arg in [*init.args.args, *init.args.kwonlyargs] if arg.arg not in set_by_foundry)


def any_key() -> None:
    """A ``passthrough`` that hands on every key: a registry object's arguments (an optimizer's, a
    scheduler's), which its constructor checks when llm-foundry builds it."""
    return None


def check_foundry_key(key: str, pruning: bool) -> None:
    """Raises one :class:`ConfigError` naming ``key`` and the reason, for a key llm-foundry accepts
    that this recipe cannot honour (see :data:`NOT_SUPPORTED`, :data:`NOT_SUPPORTED_WITH_PRUNING`)."""
    if key in NOT_SUPPORTED:
        raise ConfigError(f"{key}: llm-foundry's key, not supported here: {NOT_SUPPORTED[key]}")
    if pruning and key in NOT_SUPPORTED_WITH_PRUNING:
        raise ConfigError(f"{key}: llm-foundry's key, not supported with model.pruning: "
                          f'{NOT_SUPPORTED_WITH_PRUNING[key]}')
