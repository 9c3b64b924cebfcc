"""Errors raised for bad user input: one readable message, no traceback needed.

They live on the ground floor so that ``data_prep`` needs nothing of ``composer_plugins``;
:mod:`composer_plugins.errors` re-exports them, so ``except ShearError`` catches both packages' errors.
"""


class ShearError(Exception):
    """Base class of every user-facing error of this project."""


class ConfigError(ShearError, ValueError):
    """A YAML key, value or type is wrong; the message names the key and what was expected."""
