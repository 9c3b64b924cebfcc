"""A run with ``fsdp_config`` shards with Composer's FSDP2 (``torch.distributed.fsdp.fully_shard``), never FSDP1.

Composer 0.32.1 picks the FSDP implementation from the ``FSDP_VERSION`` environment variable
and defaults to FSDP1 (``trainer.py``, ``_parse_parallelism_config``), although the presets'
``fsdp_config`` is written for FSDP2 and the pruning hooks, export and one-process resume assume it.
:func:`require_fsdp2` sets ``FSDP_VERSION=2`` when it is unset and refuses any other value with
one message. The recipe's llm-foundry config transform calls it for a run with ``fsdp_config``
(:func:`~composer_plugins.run_setup.prepare_run`), on every entry path; ``train.py`` calls it
too, before its heavy imports (:func:`~composer_plugins.run_setup.check_environment`).
"""
from __future__ import annotations

import logging
import os
from typing import MutableMapping, Optional

from composer_plugins.errors import ConfigError

log = logging.getLogger(__name__)


def require_fsdp2(env: Optional[MutableMapping[str, str]] = None) -> None:
    """Make Composer build FSDP2: set ``FSDP_VERSION=2`` if unset.

    Raises:
        ConfigError: ``FSDP_VERSION`` is set to anything but ``2``.
    """
    env = os.environ if env is None else env
    version = env.get('FSDP_VERSION')
    if version is None:
        env['FSDP_VERSION'] = '2'
        log.debug('fsdp_config: FSDP_VERSION=2 (Composer FSDP2)')
    elif version.strip() != '2':
        raise ConfigError(f'fsdp_config: this recipe shards with FSDP2, but FSDP_VERSION={version!r} is set '
                          '(Composer would build FSDP1); unset FSDP_VERSION or set FSDP_VERSION=2')
