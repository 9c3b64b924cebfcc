"""Write output directories atomically: stage next to the destination, then rename into place.

An interrupted command never leaves something at ``--out`` that looks complete.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from data_prep.errors import ShearError


def check_out_dir(out_dir: Path, force: bool) -> None:
    """Refuse an output path that would be clobbered.

    Raises:
        ShearError: ``out_dir`` is a file, or a non-empty directory and ``force`` is False.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise ShearError(f'--out {out_dir} exists and is not a directory')
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise ShearError(f'--out {out_dir} is not empty; pass --force to replace its contents')


def apply_default_mode(directory: Path) -> None:
    """Give every file the umask's default mode (safetensors writes 0600 files)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in directory.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~umask)


@contextlib.contextmanager
def staged_output(out_dir: Path) -> Iterator[Path]:
    """Yield a fresh directory next to ``out_dir``; on success it replaces ``out_dir``.

    Both renames stay on one file system, so each is atomic; an existing ``out_dir`` is
    renamed aside first and deleted after. On any error the staging directory is removed.
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tag = f'{os.getpid()}-{uuid.uuid4().hex[:8]}'
    staging = out_dir.with_name(f'.{out_dir.name}.tmp-{tag}')
    staging.mkdir()  # unlike tempfile.mkdtemp, honours the umask (no 0700 output dir)
    try:
        yield staging
        apply_default_mode(staging)
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f'.{out_dir.name}.old-{tag}')
            out_dir.rename(old)
        staging.rename(out_dir)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
