"""Names of models in a run YAML: a local HF directory, a hub id, or a named tiny config (pure Python)."""
from __future__ import annotations

import os

from composer_plugins.errors import ConfigError

TINY_MODEL_PREFIX = 'tiny-'


def looks_like_path(value: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else with a slash (or ``os.sep``) is a filesystem path, and
    so is ``org/name`` where ``org`` is a local folder (``models/my_llama`` next to the user's ``models/``)."""
    if value.startswith(('/', '.', '~')) or value.count('/') > 1 or os.sep != '/' and os.sep in value:
        return True
    return '/' in value and os.path.isdir(value.split('/', 1)[0])


def _siblings(name: str) -> str:
    """`` (<folder> holds: a, b)``: what the folder of a missing path does hold, for the message."""
    folder = os.path.dirname(os.path.expanduser(name.rstrip('/'))) or '.'
    if not os.path.isdir(folder):
        return f' ({folder!r} does not exist either)'
    entries = sorted(e for e in os.listdir(folder) if os.path.isdir(os.path.join(folder, e)))[:10]
    return f' ({folder!r} holds: {", ".join(entries) or "no folders"})'


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
        raise ConfigError(f'{key}: {missing}{_siblings(name)}')


TOKENIZER_FILES = ('tokenizer.json', 'tokenizer_config.json', 'tokenizer.model', 'vocab.json')


def check_tokenizer_name(name: str, key: str, registered: tuple[str, ...]) -> None:
    """A registered tokenizer (``byte-level``), a directory with a tokenizer file, or something that can only be a
    hub id; a local-looking path that does not exist is one :class:`ConfigError` (no hub lookup)."""
    if name in registered:
        return
    expanded = os.path.expanduser(name)
    if os.path.isdir(expanded):
        if not any(os.path.isfile(os.path.join(expanded, f)) for f in TOKENIZER_FILES):
            raise ConfigError(f'{key}: {name!r} is a directory without a tokenizer ({", ".join(TOKENIZER_FILES)})')
        return
    if looks_like_path(name) or os.path.exists(expanded):
        raise ConfigError(f'{key}: tokenizer directory {name!r} does not exist{_siblings(name)} '
                          f'(expected a local HF directory, a hub id, or {" / ".join(registered)})')
