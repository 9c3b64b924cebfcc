"""What every rank does with a validated run config before llm-foundry builds the Trainer.

:func:`prepare_run` is called from the recipe's llm-foundry config transform
(:func:`~composer_plugins.config.foundry.shear_run_transform`), so ``shear train``, ``train.py``,
``composer train.py`` and llm-foundry's own ``train_from_yaml`` all take the same steps.
"""
from __future__ import annotations

import dataclasses
import logging
import os

from composer_plugins.config.fsdp_version import require_fsdp2
from composer_plugins.config.schema import RunConfig
from composer_plugins.console import quiet_third_party

log = logging.getLogger(__name__)


def prepare_run(run_cfg: RunConfig) -> RunConfig:
    """Log level and console filters, the progress bar, FSDP2, one-process resume, unfinished checkpoints,
    the data's tokenizer, CPU threads."""
    if run_cfg.python_log_level:
        logging.getLogger('composer_plugins').setLevel(run_cfg.python_log_level.upper())
    quiet_third_party(run_cfg.autoresume)
    run_cfg = _console(run_cfg)
    run_cfg = _for_one_process(run_cfg)
    check_environment(run_cfg)
    _set_aside_unfinished_checkpoints(run_cfg)
    _check_data_tokenizer(run_cfg)
    _share_cpu_threads()
    return run_cfg


def check_environment(run_cfg: RunConfig) -> None:
    """What the environment decides and no heavy import is needed to check: a sharded run (``fsdp_config``,
    more than one process) needs Composer's FSDP2 (:func:`require_fsdp2`). ``train.py`` calls it before
    importing torch and llm-foundry, so a wrong ``FSDP_VERSION`` fails in a second rather than after ~10 s."""
    if run_cfg.fsdp_config is not None and int(os.environ.get('WORLD_SIZE', '1')) != 1:
        require_fsdp2()


def _console(run_cfg: RunConfig) -> RunConfig:
    """A progress bar with an ETA when the console is a terminal, the metrics blocks written above it
    (:mod:`~composer_plugins.console_bar`); any other run's console is left as the YAML says."""
    from composer_plugins.console_bar import with_progress_bar

    return with_progress_bar(run_cfg)


def _for_one_process(run_cfg: RunConfig) -> RunConfig:
    """In a one-process run: no ``fsdp_config`` (llm-foundry drops it too, but after naming the checkpoints
    by it), and a sharded checkpoint to resume is consolidated first
    (:mod:`~composer_plugins.models.one_process_resume`).
    """
    if int(os.environ.get('WORLD_SIZE', '1')) != 1:
        return run_cfg
    if run_cfg.fsdp_config is not None:
        log.info('One process: fsdp_config is not used; checkpoints are written as ep*-ba*-rank0.pt')
        run_cfg = dataclasses.replace(run_cfg, fsdp_config=None)
    from composer_plugins.models.one_process_resume import prepare_one_process_resume

    resume = prepare_one_process_resume(run_cfg.load_path, run_cfg.save_folder, run_cfg.autoresume)
    if resume is None:
        return run_cfg
    log.info('One process resumes the sharded checkpoint %s from %s', resume.sharded, resume.load_path)
    return dataclasses.replace(run_cfg, load_path=str(resume.load_path))


def _set_aside_unfinished_checkpoints(run_cfg: RunConfig) -> None:
    """With ``autoresume``, global rank 0 renames checkpoints a kill left newer than ``latest``
    (:mod:`~composer_plugins.models.unfinished_checkpoints`)."""
    if not (run_cfg.autoresume and run_cfg.save_folder) or os.environ.get('RANK', '0') != '0':
        return
    from composer_plugins.models.unfinished_checkpoints import set_aside_unfinished_checkpoints

    sharded = run_cfg.fsdp_config is not None and run_cfg.fsdp_config.state_dict_type == 'sharded'
    set_aside_unfinished_checkpoints(run_cfg.save_folder, sharded)


def _check_data_tokenizer(run_cfg: RunConfig) -> None:
    """The tokenizer that prepared the data (its manifest's fingerprint) is the run's; loads it only if recorded."""
    from composer_plugins.data.data_model_check import check_manifest_tokenizer
    from data_prep.tokenizers import load_tokenizer

    name = run_cfg.tokenizer.name
    check_manifest_tokenizer(run_cfg.data_folders(), name, lambda: load_tokenizer(name))


def _share_cpu_threads() -> None:
    """Give each of the node's processes its share of the cores, as torchrun does.

    Without this, ``composer -n 2`` on a 2-core CPU runs 2x2 intra-op threads and
    training is ~40x slower. An explicit ``OMP_NUM_THREADS`` wins.
    """
    import torch

    local_world_size = int(os.environ.get('LOCAL_WORLD_SIZE', '1'))
    if 'OMP_NUM_THREADS' in os.environ or local_world_size <= 1 or torch.cuda.is_available():
        return
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world_size))
