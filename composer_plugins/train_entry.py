"""What ``composer train.py yamls/<run>.yaml key=value ...`` runs on every rank.

1. Read the YAML and overrides and validate them into typed dataclasses (fast; a bad
   key fails here, before heavy imports).
2. Register this package's components in llm-foundry's registries.
3. Hand the validated config to llm-foundry's training entry point
   (``llmfoundry.command_utils.train``), which builds the Composer ``Trainer``.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
from typing import TYPE_CHECKING, Optional, Sequence

from composer_plugins.config.foundry import to_foundry_config
from composer_plugins.config.fsdp_version import require_fsdp2
from composer_plugins.config.load import load_run_config
from composer_plugins.config.schema import RunConfig
from composer_plugins.errors import ShearError

if TYPE_CHECKING:
    import torch
    from composer import Trainer

log = logging.getLogger('composer_plugins.train')

USAGE = 'usage: composer train.py YAML [key=value ...]   (or: python train.py YAML [key=value ...])'


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Validate the config, then train; returns a process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    if not argv or argv[0] in ('-h', '--help'):
        log.error(USAGE)
        return 2
    try:
        run_cfg = load_run_config(argv[0], argv[1:])
    except ShearError as err:
        log.error('invalid config: %s', err)
        return 2
    try:
        run(run_cfg)
    except ShearError as err:
        log.error('%s', err)
        return 2
    return 0


def run(run_cfg: RunConfig) -> 'Trainer':
    """Register our components and train with llm-foundry's entry point; returns the Trainer."""
    if run_cfg.python_log_level:
        logging.getLogger('composer_plugins').setLevel(run_cfg.python_log_level.upper())
    run_cfg = _for_one_process(run_cfg)
    if run_cfg.fsdp_config is not None:
        require_fsdp2()
    _set_aside_unfinished_checkpoints(run_cfg)
    _share_cpu_threads()

    from omegaconf import OmegaConf

    from composer_plugins.registry import register_all
    register_all()
    _check_data_tokenizer(run_cfg)
    from llmfoundry.command_utils import train

    trainer = train(OmegaConf.create(to_foundry_config(run_cfg)))
    log.info('parallelism: %s', describe_parallelism(trainer.state.model))
    return trainer


def describe_parallelism(model: 'torch.nn.Module') -> str:
    """How the trained model was wrapped, read from its module types: FSDP2, FSDP1, DDP or one process."""
    import torch.distributed as dist
    from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel
    from torch.nn.parallel import DistributedDataParallel

    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    modules = list(model.modules())
    if any(isinstance(m, FSDPModule) for m in modules):
        return f'FSDP2 (fully_shard) over {world} ranks'
    if any(isinstance(m, FullyShardedDataParallel) for m in modules):
        return f'FSDP1 over {world} ranks'
    if any(isinstance(m, DistributedDataParallel) for m in modules):
        return f'DDP over {world} ranks'
    return f'no wrapper, {world} process(es)'


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


if __name__ == '__main__':
    sys.exit(main())
