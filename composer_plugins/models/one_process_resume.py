"""Resume a sharded (FSDP2, ``torch.distributed.checkpoint``) checkpoint in a single process.

llm-foundry drops ``fsdp_config`` when the world has one process, and Composer then reads a
checkpoint with ``torch.load``: a sharded ``ep*-ba*`` folder fails with ``IsADirectoryError``,
and ``autoresume`` looks for ``latest-rank0.pt`` only, so a run continued on one process would
silently start from batch 0. :func:`prepare_one_process_resume` closes both gaps before the
Trainer is built:

* the checkpoint to resume (an explicit sharded ``load_path``, or with ``autoresume`` the folder
  ``latest-sharded-rank0`` points at when no ``latest-rank0.pt`` exists yet) is consolidated
  once into ``<save_folder>/consolidated/<name>-rank0.pt`` with torch's ``dcp_to_torch_save``
  (full tensors; the optimizer state is already keyed by parameter name, as Composer writes it
  in both layouts), written to a temporary name and renamed, so a killed conversion leaves
  nothing half-written;
* ``load_path`` points at it. With ``autoresume``, Composer still prefers ``latest-rank0.pt``
  once this run has written one, so a later one-process restart continues from its own newest
  checkpoint.

The sharded checkpoints are left as they are; the one-process run writes ordinary
``ep*-ba*-rank0.pt`` files beside them.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)

CONSOLIDATED_DIR = 'consolidated'


def is_sharded_checkpoint(path: str) -> bool:
    """A local ``torch.distributed.checkpoint`` folder (it holds ``.metadata``)."""
    return '://' not in path and os.path.isfile(os.path.join(path, '.metadata'))


@dataclass(frozen=True)
class OneProcessResume:
    """What :func:`prepare_one_process_resume` decided: the sharded source and the file to load."""
    sharded: Path
    load_path: Path


def sharded_checkpoint_to_resume(load_path: Optional[str], save_folder: Optional[str],
                                 autoresume: bool) -> Optional[Path]:
    """The sharded folder a one-process run would resume from, or None when it resumes otherwise."""
    if autoresume and save_folder and '://' not in save_folder:
        if os.path.exists(os.path.join(save_folder, 'latest-rank0.pt')):
            return None  # Composer's own autoresume: this layout's newest checkpoint
        latest = os.path.join(save_folder, 'latest-sharded-rank0')
        if os.path.exists(latest) and is_sharded_checkpoint(os.path.realpath(latest)):
            return Path(os.path.realpath(latest))
    if load_path and is_sharded_checkpoint(load_path):
        return Path(load_path).resolve()
    return None


def consolidate(sharded: Path, out_file: Path) -> Path:
    """``dcp_to_torch_save(sharded, out_file)`` unless ``out_file`` exists; atomic. Returns ``out_file``."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    if out_file.is_file():
        return out_file
    out_file.parent.mkdir(parents=True, exist_ok=True)
    partial = out_file.with_name(out_file.name + '.partial')
    dcp_to_torch_save(str(sharded), str(partial))
    os.replace(partial, out_file)
    log.info('Consolidated the sharded checkpoint %s into %s for a one-process resume', sharded, out_file)
    return out_file


def prepare_one_process_resume(load_path: Optional[str], save_folder: Optional[str],
                               autoresume: bool) -> Optional[OneProcessResume]:
    """Consolidates the sharded checkpoint a one-process run resumes from; returns what to load, if any."""
    sharded = sharded_checkpoint_to_resume(load_path, save_folder, autoresume)
    if sharded is None:
        return None
    target_dir = Path(save_folder) / CONSOLIDATED_DIR if save_folder and '://' not in save_folder \
        else sharded.parent / CONSOLIDATED_DIR
    return OneProcessResume(sharded, consolidate(sharded, target_dir / f'{sharded.name}-rank0.pt'))
