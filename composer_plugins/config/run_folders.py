"""Checks of the run's output folder at config load: one line naming the folder and the key.

Composer finds the same problems only at fit start, as a ``PermissionError`` or a
``FileExistsError`` traceback that names its own ``overwrite`` argument; here they are
:class:`~composer_plugins.errors.ConfigError` naming ``save_folder``, ``autoresume`` and
``save_overwrite``, before anything is built or written.
"""
from __future__ import annotations

import os
import re
from typing import Optional

from composer_plugins.errors import ConfigError

_CHECKPOINT = re.compile(r'^(ep\d+-ba\d+|latest-)')


def _nearest_existing(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def existing_checkpoints(folder: str) -> list[str]:
    """Names of Composer checkpoints (``ep*-ba*`` files or folders, ``latest-*`` links) directly in ``folder``."""
    if not os.path.isdir(folder):
        return []
    return sorted(name for name in os.listdir(folder) if _CHECKPOINT.match(name))


def check_save_folder(save_folder: Optional[str], run_name: Optional[str], *, autoresume: bool,
                      save_overwrite: bool, load_path: Optional[str]) -> None:
    """``save_folder`` can be written, and holds no checkpoints unless the run resumes or overwrites them.

    Remote folders (``s3://`` ...) and names with placeholders other than ``{run_name}`` are left to Composer.
    """
    if save_folder is None or '://' in save_folder:
        return
    folder = save_folder.replace('{run_name}', run_name or '')
    if '{' in folder:
        return
    existing = _nearest_existing(folder)
    if not os.path.isdir(existing):
        raise ConfigError(f'save_folder: {save_folder!r} cannot be created: {existing!r} is a file')
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f'save_folder: {save_folder!r} cannot be written ({existing!r} is not writable); '
                          'choose another save_folder (or variables.run_dir)')
    found = existing_checkpoints(folder)
    if found and not (autoresume or save_overwrite or load_path):
        shown = ', '.join(found[:3]) + (f' and {len(found) - 3} more' if len(found) > 3 else '')
        raise ConfigError(f'save_folder: {save_folder!r} already holds checkpoints ({shown}); set autoresume=true '
                          'to continue that run, save_overwrite=true to replace them, or choose another '
                          'save_folder (or variables.run_dir)')


def check_load_path(load_path: Optional[str]) -> None:
    """A local ``load_path`` exists (a checkpoint file, a sharded folder or a symlink to either)."""
    if load_path is None or '://' in load_path or '{' in load_path:
        return
    if not os.path.exists(load_path):
        raise ConfigError(f'load_path: {load_path!r} does not exist (expected a checkpoint file or a sharded '
                          'checkpoint folder)')
