"""Targeted structured pruning (Sheared-LLaMA, Xia et al. 2023, arXiv 2310.06694), pure torch.

* :mod:`.hard_concrete` -- hard concrete L0 gates (Louizos et al. 2018);
* :mod:`.shapes` -- model shapes, exact parameter counts, target checks;
* :mod:`.masks` -- the mask set of one model, expected sparsities and parameter counts;
* :mod:`.lagrangian` -- the Lagrangian sparsity constraint (paper eq. 2 / eq. 3).

This package never imports Composer, llm-foundry or transformers.
"""
from composer_plugins.pruning.hard_concrete import (
    BETA,
    DEFAULT_INIT_DROP_PROB,
    LIMIT_L,
    LIMIT_R,
    LOG_ALPHA_MAX,
    LOG_ALPHA_MIN,
    HardConcreteGate,
    log_alpha_for_drop_prob,
)
from composer_plugins.pruning.lagrangian import LagrangianMultipliers, target_at_step
from composer_plugins.pruning.masks import (
    BINARY_DETERMINISTIC,
    MASK_TYPES,
    L0Masks,
    MaskSpec,
    build_mask_specs,
    default_mask_types,
    expected_params_from_probs,
    expected_sparsity_from_probs,
    target_sparsity_for,
)
from composer_plugins.pruning.shapes import (
    ModelShape,
    count_embedding_params,
    count_layer_params,
    count_non_embedding_params,
    count_params,
    validate_target,
)

__all__ = [
    'BETA',
    'BINARY_DETERMINISTIC',
    'DEFAULT_INIT_DROP_PROB',
    'LIMIT_L',
    'LIMIT_R',
    'LOG_ALPHA_MAX',
    'LOG_ALPHA_MIN',
    'MASK_TYPES',
    'HardConcreteGate',
    'L0Masks',
    'LagrangianMultipliers',
    'MaskSpec',
    'ModelShape',
    'build_mask_specs',
    'default_mask_types',
    'count_embedding_params',
    'count_layer_params',
    'count_non_embedding_params',
    'count_params',
    'expected_params_from_probs',
    'expected_sparsity_from_probs',
    'log_alpha_for_drop_prob',
    'target_at_step',
    'target_sparsity_for',
    'validate_target',
]
