"""Errors raised for bad user input: one readable message, no traceback needed."""


class ShearError(Exception):
    """Base class of every user-facing error of this package."""


class ConfigError(ShearError, ValueError):
    """A YAML key, value or type is wrong; the message names the key and what was expected."""


class TrainingStopped(ShearError, RuntimeError):
    """Training was stopped on purpose (a non-finite loss, say); the message names the batch and what survives."""
