"""Several training runs in one process (``shear demo``, ``benchmarks/quality.py``) keep no model alive."""
from __future__ import annotations

import gc
import weakref

from composer_plugins.tools.demo import stages
from conftest import MIXTURE_YAML


def _live_composer_models() -> list:
    from composer.models import ComposerModel
    gc.collect()
    return [obj for obj in gc.get_objects() if isinstance(obj, ComposerModel)]


def test_a_finished_stage_leaves_no_model_in_memory(mixture_dir, tmp_path):
    """The run saves a checkpoint, which in torch 2.7 caches the model in ``_get_fqns``: without
    ``release_state_dict_cache`` in ``stages.train`` each model and its optimizer state outlived its
    run (1 GB a run at 74M parameters; a 7-arm study was killed at 24 GB)."""
    earlier = weakref.WeakSet(_live_composer_models())  # other tests' models are not this test's concern
    for run in range(2):
        stages.train(MIXTURE_YAML, [f'variables.data_dir={mixture_dir}', f'variables.run_dir={tmp_path / str(run)}',
                                    'max_duration=2ba', 'save_interval=2ba', 'python_log_level=warning'])
        assert (tmp_path / str(run) / 'checkpoints' / 'latest-rank0.pt').exists()
        assert [type(m).__name__ for m in _live_composer_models() if m not in earlier] == []
