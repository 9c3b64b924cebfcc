"""What ``composer train.py yamls/<run>.yaml key=value ...`` runs on every rank.

1. Read the YAML and overrides and validate them into typed dataclasses (fast; a bad
   key fails here, before heavy imports).
2. Register this package's components in llm-foundry's registries.
3. Hand the validated config to llm-foundry's training entry point
   (``llmfoundry.command_utils.train``). Its config transforms include the recipe's
   (:func:`~composer_plugins.config.foundry.shear_run_transform`: the same checks and run
   preparation as on llm-foundry's own entry points); then it builds the Composer ``Trainer``.
"""
from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Optional, Sequence

from composer_plugins.bundled import resolve_run_yaml
from composer_plugins.config.load import load_run_config
from composer_plugins.config.schema import RunConfig
from composer_plugins.config.typed import to_dict
from composer_plugins.console import quiet_third_party
from composer_plugins.errors import ShearError
from composer_plugins.run_setup import check_environment

if TYPE_CHECKING:
    import torch
    from composer import Trainer

log = logging.getLogger('composer_plugins.train')

USAGE = ('usage: shear train YAML [key=value ...]   (or: composer [-n N] train.py YAML ..., '
         'composer [-n N] -m composer_plugins.train_entry YAML ...); YAML is a path or a bundled name')


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Validate the config, then train; returns a process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    quiet_third_party()  # before the heavy imports whose warnings it filters
    if not argv or argv[0] in ('-h', '--help'):
        log.error(USAGE)
        return 2
    try:
        run_cfg = load_run_config(str(resolve_run_yaml(argv[0])), argv[1:])
        check_environment(run_cfg)
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
    """Register our components and train with llm-foundry's entry point; returns the Trainer.

    llm-foundry receives the validated config as a YAML mapping (:func:`~composer_plugins.config.typed.to_dict`);
    the recipe's config transform (:func:`~composer_plugins.config.foundry.shear_run_transform`), which
    every llm-foundry entry point applies, checks it again and prepares the run, so this path and
    ``train_from_yaml`` take the same steps.
    """
    from omegaconf import OmegaConf

    from composer_plugins.registry import register_all
    register_all()
    from llmfoundry.command_utils import train

    trainer = train(OmegaConf.create(to_dict(run_cfg)))
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


if __name__ == '__main__':
    sys.exit(main())
