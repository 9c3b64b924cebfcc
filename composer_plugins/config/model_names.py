"""Names of models in a run YAML: a local HF directory, a hub id, or a named tiny config (pure Python)."""
from __future__ import annotations

import os

from composer_plugins.errors import ConfigError

TINY_MODEL_PREFIX = 'tiny-'


def looks_like_path(value: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else with a slash (or ``os.sep``) is a filesystem path."""
    return value.startswith(('/', '.', '~')) or value.count('/') > 1 or os.sep != '/' and os.sep in value


def check_model_name(name: str, key: str, missing: str) -> None:
    """A tiny name, a directory with ``config.json``, or something that can only be a hub id.

    Args:
        name: the value.
        key: its YAML key, for messages.
        missing: the message after ``key: `` when ``name`` is a path that does not exist.

    Raises:
        ConfigError: a directory without ``config.json``, or a path that does not exist.
    """
    if name.startswith(TINY_MODEL_PREFIX):
        return
    expanded = os.path.expanduser(name)
    if os.path.isdir(expanded):
        if not os.path.isfile(os.path.join(expanded, 'config.json')):
            raise ConfigError(f'{key}: {name!r} is a directory without config.json')
        return
    if looks_like_path(name) or os.path.exists(expanded):
        raise ConfigError(f'{key}: {missing}')
