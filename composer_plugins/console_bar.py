"""Composer's progress bar (with its ETA) for interactive runs; every other console line written above it.

The rule, applied by :func:`~composer_plugins.run_setup.prepare_run` on every entry path
(:func:`wants_progress_bar`):

* ``progress_bar`` written in the run YAML (or on the command line) wins: ``false`` is today's console,
  ``true`` is the bar. Null or absent (the shipped YAMLs) means: a bar when the console is a terminal,
  that is local rank 0's stderr is a TTY and ``SHEAR_PROGRESS_BAR`` is not ``0``.
* Without a bar (SLURM logs, CI, pipes, tests, ranks other than local rank 0) the config is handed
  on untouched: Composer's ``ConsoleLogger`` prints one metrics block every ``console_log_interval``.
* With a bar, :func:`with_progress_bar` sets ``progress_bar: true`` and ``log_to_console: false`` and adds
  the ``console_bar`` logger (:class:`BarConsoleLogger`), which prints the same metrics blocks every
  ``console_log_interval`` through ``tqdm.write`` (Composer's ``ConsoleLogger`` prints them with ``print``,
  cutting through the bar) and, while the Trainer runs, sends the root logger's stderr handlers
  through ``tqdm.write`` too. ``log_to_console: false`` keeps the bar and those log lines, without the
  metrics blocks.

Every metric stays in ``metrics.jsonl`` whatever the console shows.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
import warnings
from typing import TYPE_CHECKING, Any, Mapping, Optional, TextIO, Union

import tqdm.auto
from composer.core import Time
from composer.loggers import ConsoleLogger, Logger, ProgressBarLogger

if TYPE_CHECKING:
    from composer.core import State

    from composer_plugins.config.schema import RunConfig

log = logging.getLogger(__name__)

ENV_VAR = 'SHEAR_PROGRESS_BAR'
"""``0`` turns the automatic bar off (an explicit ``progress_bar`` still wins)."""
LOGGER_NAME = 'console_bar'
"""The llm-foundry registry name of :class:`BarConsoleLogger` (``composer_plugins.registry``)."""
FOUNDRY_CONSOLE_LOG_INTERVAL = '1ba'
"""llm-foundry's default ``console_log_interval``."""
_COMPOSER_WARNING = r'Specifying the ConsoleLogger via `loggers` is not recommended'


def stderr_is_terminal() -> bool:
    """Whether this process's stderr is a TTY with a width (False for a replaced or closed stderr, and for a
    pseudo-terminal of 0 columns, where tqdm draws an empty bar)."""
    try:
        fd = sys.stderr.fileno()
        return os.isatty(fd) and os.get_terminal_size(fd).columns > 0
    except (AttributeError, OSError, ValueError):
        return False


def wants_progress_bar(foundry_keys: Mapping[str, Any], environ: Optional[Mapping[str, str]] = None,
                       terminal: Optional[bool] = None) -> bool:
    """Whether the run draws Composer's progress bar (see the module's rule).

    ``environ`` and ``terminal`` default to ``os.environ`` and :func:`stderr_is_terminal`.
    """
    written = foundry_keys.get('progress_bar')
    if written is not None:
        return bool(written)
    environ = os.environ if environ is None else environ
    if environ.get(ENV_VAR, '').strip() == '0' or environ.get('LOCAL_RANK', '0') != '0':
        return False
    return stderr_is_terminal() if terminal is None else terminal


def with_progress_bar(run_cfg: RunConfig, bar: Optional[bool] = None) -> RunConfig:
    """``run_cfg`` with the console of the rule: untouched without a bar, else the bar and ``console_bar``.

    ``bar`` defaults to :func:`wants_progress_bar`.
    """
    keys = dict(run_cfg.foundry_keys)
    if not (wants_progress_bar(keys) if bar is None else bar):
        if keys.get('progress_bar', False) is None:
            del keys['progress_bar']  # null: llm-foundry's default, false
        return dataclasses.replace(run_cfg, foundry_keys=keys)
    metrics = bool(keys.get('log_to_console', True))
    interval = keys.get('console_log_interval', FOUNDRY_CONSOLE_LOG_INTERVAL)
    keys.update(progress_bar=True, log_to_console=False)
    loggers = dict(run_cfg.loggers or {})
    loggers.setdefault(LOGGER_NAME, {'log_interval': interval, 'metrics': metrics})
    warnings.filterwarnings('ignore', message=_COMPOSER_WARNING)  # the Trainer's, about the logger above
    _register_logger()
    log.info('console: progress bar (terminal); metrics %s', f'every {interval}' if metrics else 'off')
    return dataclasses.replace(run_cfg, foundry_keys=keys, loggers=loggers)


def _register_logger() -> None:
    """Registers :class:`BarConsoleLogger` where the installed entry points predate it (``make install``
    refreshes them); this runs inside llm-foundry's ``train``, which builds the loggers next."""
    from llmfoundry import registry

    if LOGGER_NAME not in registry.loggers.get_all():
        registry.loggers.register(LOGGER_NAME, func=BarConsoleLogger)


class BarSafeStream:
    """A text stream whose ``write`` goes through ``tqdm.write`` (bars cleared, text written, bars redrawn)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        tqdm.auto.tqdm.write(text, file=self.stream, end='')
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding ...
        return getattr(self.stream, name)


def route_log_handlers(stream: TextIO) -> list[logging.StreamHandler]:
    """Point the root logger's handlers that write to ``stream`` at a :class:`BarSafeStream`; returns them."""
    routed = []
    for handler in logging.getLogger().handlers:
        if (isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
                and handler.stream is stream):
            handler.setStream(BarSafeStream(stream))
            routed.append(handler)
    return routed


def unroute_log_handlers(handlers: list[logging.StreamHandler]) -> None:
    """Undo :func:`route_log_handlers` on ``handlers`` (those that still write to a :class:`BarSafeStream`)."""
    for handler in handlers:
        if isinstance(handler.stream, BarSafeStream):
            handler.setStream(handler.stream.stream)


class BarConsoleLogger(ConsoleLogger):
    """Composer's ``ConsoleLogger`` for a run with a progress bar: its lines go through ``tqdm.write``.

    Args:
        log_interval: as ``console_log_interval``: one metrics block every that many batches (or epochs).
        metrics: False prints no metrics blocks (``log_to_console: false``); log lines are still routed.

    It prints Composer's config block (the ``ProgressBarLogger``, which would print it with ``print`` beside
    its placeholder bar, is told it is printed). From ``init`` to ``close`` the root logger's stderr handlers
    write through ``tqdm.write`` (:func:`route_log_handlers`).
    """

    def __init__(self, log_interval: Union[int, str, Time] = FOUNDRY_CONSOLE_LOG_INTERVAL,
                 metrics: bool = True) -> None:
        super().__init__(log_interval=log_interval, stream='stderr')
        self.metrics = metrics
        self._routed: list[logging.StreamHandler] = []

    def init(self, state: State, logger: Logger) -> None:
        del logger
        for callback in state.callbacks:
            if isinstance(callback, ProgressBarLogger):
                callback.hparams_already_logged_to_console = True
        self._routed = route_log_handlers(self.stream)

    def close(self, state: State, logger: Logger) -> None:
        del state, logger
        unroute_log_handlers(self._routed)
        self._routed = []

    def log_to_console(self, data: dict[str, Any], state: State, prefix: str = '', is_train: bool = True) -> None:
        if self.metrics:
            super().log_to_console(data, state, prefix=prefix, is_train=is_train)

    def _log_to_console(self, log_str: str) -> None:
        tqdm.auto.tqdm.write(log_str, file=self.stream)
        self.stream.flush()
