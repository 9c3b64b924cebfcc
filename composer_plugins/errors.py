"""Errors raised for bad user input: one readable message, no traceback needed.

:class:`ShearError` and :class:`ConfigError` are defined in :mod:`data_prep.errors` (the ground
floor) and re-exported here; the training library adds its own.
"""
from data_prep.errors import ConfigError, ShearError

__all__ = ['ConfigError', 'ShearError', 'TrainingStopped']


class TrainingStopped(ShearError, RuntimeError):
    """Training was stopped on purpose (a non-finite loss, say); the message names the batch and what survives."""
