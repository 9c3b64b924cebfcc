"""Release the shared memory mosaicml-streaming opens, when the work that opened it is done.

streaming registers the cleanup of every shared-memory segment it creates with ``atexit``,
which keeps the segment and its file descriptor open until the process exits. One training
run opens about 250, so a process that runs several trainings or dataset reads (``shear
demo``, ``benchmarks/quality.py``, a test session) ends with "Too many open files". Inside
:func:`released_streaming_memory` those registrations are recorded instead, and run when the
block ends.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, Callable

log = logging.getLogger(__name__)


class _RecordingAtexit:
    """Stands in for the ``atexit`` module inside streaming's shared-memory module."""

    def __init__(self) -> None:
        self.cleanups: list[tuple[Callable[..., Any], tuple, dict]] = []

    def register(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
        self.cleanups.append((func, args, kwargs))
        return func


@contextlib.contextmanager
def released_streaming_memory() -> Iterator[None]:
    """Close, when the block ends, the streaming shared memory created inside it (nests)."""
    import streaming.base.shared.memory as shared_memory

    recorder = _RecordingAtexit()
    previous = shared_memory.atexit
    shared_memory.atexit = recorder
    try:
        yield
    finally:
        shared_memory.atexit = previous
        for func, args, kwargs in reversed(recorder.cleanups):
            try:
                func(*args, **kwargs)
            except Exception:  # noqa: BLE001 - already released by its owner
                log.debug('shared memory cleanup %s failed', func, exc_info=True)
