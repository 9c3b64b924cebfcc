"""Autoresume after a kill that landed while a checkpoint was being saved.

Composer writes ``ep<e>-ba<b>-rank<r>.pt`` (or the sharded folder ``ep<e>-ba<b>``) first and
points ``latest-rank0.pt`` (``latest-sharded-rank0``) at it afterwards. A SIGKILL between the two
leaves a checkpoint newer than the one ``latest`` names: possibly half-written, never resumed
from. ``autoresume`` then restarts from ``latest``, and Composer's ``CheckpointSaver`` refuses to
start (``FileExistsError: ... may conflict with a future checkpoint``): the run cannot continue
without a person deleting files by hand.

:func:`set_aside_unfinished_checkpoints` renames each such checkpoint to ``<name>.unfinished``
before the Trainer is built (nothing is deleted), so the run resumes from ``latest`` exactly as
an uninterrupted run would have continued, and logs what it set aside. A folder without a
``latest`` pointer is left alone. Only global rank 0 calls it, before the process group exists:
the other ranks reach ``CheckpointSaver.fit_start`` only after rank 0 has joined the group.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)

RANK_FILE = re.compile(r'^ep\d+-ba(\d+)-rank\d+\.pt$')
SHARDED_FOLDER = re.compile(r'^ep\d+-ba(\d+)$')
POINTERS = {False: 'latest-rank0.pt', True: 'latest-sharded-rank0'}
SUFFIX = '.unfinished'


def _batch(name: str, pattern: re.Pattern[str]) -> int | None:
    match = pattern.match(name)
    return int(match.group(1)) if match else None


def set_aside_unfinished_checkpoints(save_folder: str, sharded: bool) -> list[Path]:
    """Rename the checkpoints of ``save_folder`` newer than its ``latest`` pointer; returns their new paths.

    ``sharded`` says which layout the run writes (sharded ``ep*-ba*`` folders or ``*-rank*.pt``
    files); only that layout is compared with its own pointer.
    """
    folder = Path(save_folder)
    pointer = folder / POINTERS[sharded]
    pattern = SHARDED_FOLDER if sharded else RANK_FILE
    if '://' in save_folder or not pointer.is_symlink():
        return []
    resumed = _batch(Path(os.readlink(pointer)).name, pattern)
    if resumed is None:
        return []
    moved = []
    for entry in sorted(folder.iterdir()):
        batch = _batch(entry.name, pattern)
        if batch is not None and batch > resumed:
            target = entry.with_name(entry.name + SUFFIX)
            entry.rename(target)
            moved.append(target)
            log.warning('autoresume: %s is newer than %s (batch %d): the run stopped while saving it; '
                        'set aside as %s, resuming from batch %d', entry, pointer.name, resumed, target.name, resumed)
    return moved
