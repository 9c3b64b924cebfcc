"""What several callbacks read from Composer's ``State``: the model under its wrapper, a domain's eval loss."""
from __future__ import annotations

from typing import Any, Optional

from composer.core import State

EVAL_METRIC = 'LanguageCrossEntropy'
"""The eval metric whose value is a domain's loss (nats per token)."""


def unwrapped_model(state: State) -> Any:
    """The ComposerModel, without the DDP wrapper Composer puts around it on several ranks."""
    return state.model.module if hasattr(state.model, 'module') else state.model


def domain_eval_loss(state: State, domain: str) -> Optional[float]:
    """The :data:`EVAL_METRIC` of the evaluator labelled ``domain`` (its label's last part), or None."""
    for label, metrics in (state.eval_metrics or {}).items():
        if label.split('/')[-1] == domain and EVAL_METRIC in metrics:
            return float(metrics[EVAL_METRIC].compute())
    return None
