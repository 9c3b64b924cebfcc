"""The ``manifest.json`` that ``shear prep`` writes beside its shards: how to find and read it.

It records, per domain, the token counts, the tokenizer's name, its ``vocab_size`` and
(manifest version 2) ``vocab_sha256``, the fingerprint of its token-to-id map
(:func:`vocab_fingerprint`), which training checks against its own tokenizer.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional

from data_prep.errors import ConfigError

MANIFEST_NAME = 'manifest.json'


def vocab_fingerprint(tokenizer: Any) -> str:
    """sha256 of the tokenizer's token-to-id map (``get_vocab()``), sorted by id."""
    items = sorted(tokenizer.get_vocab().items(), key=lambda item: (item[1], item[0]))
    return hashlib.sha256(json.dumps(items, ensure_ascii=False).encode('utf-8')).hexdigest()


def find_manifest(local: str) -> Optional[str]:
    """The ``manifest.json`` of prepared data ``local`` (a ``shear prep`` folder or one of its domains)."""
    for folder in (local, os.path.dirname(os.path.normpath(local))):
        path = os.path.join(folder, MANIFEST_NAME)
        if os.path.isfile(path):
            return path
    return None


def read_manifest_fields(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise ConfigError(f'{path}: cannot read the prep manifest: {err}') from None
    if not isinstance(data, dict):
        raise ConfigError(f'{path}: not a prep manifest (expected a JSON object)')
    return data


def read_manifest(out_dir: str | Path) -> dict[str, Any]:
    """The manifest of a prepared folder as a dict.

    Raises:
        ShearError: No (or unreadable) ``manifest.json`` in ``out_dir``.
    """
    return read_manifest_fields(str(Path(out_dir) / MANIFEST_NAME))
