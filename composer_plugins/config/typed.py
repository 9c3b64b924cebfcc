"""Convert plain (YAML / omegaconf) dictionaries into typed dataclasses, strictly.

Every error is a :class:`~composer_plugins.errors.ConfigError` whose message names the
dotted key, the offending value and what was expected, e.g.::

    model.sourse: unknown key. Did you mean 'source'? Expected one of: attn_implementation, ...

Supported field types: ``int``, ``float``, ``str``, ``bool``, ``Any``, ``Literal[...]``,
``Optional[T]``, ``Union[...]``, ``list[T]``, ``dict[str, T]`` and nested dataclasses.
Every ``float`` must be finite: NaN and +-inf are errors naming the key, wherever they sit
(a learning rate, a domain weight in a list, a reference loss in a per-domain map).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from composer_plugins.errors import ConfigError

T = TypeVar('T')

_MISSING = dataclasses.MISSING


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f'{path}[{key}]'
    return f'{path}.{key}' if path else str(key)


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return 'one of ' + ', '.join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return ' or '.join(_describe(a) for a in get_args(tp))
    if dataclasses.is_dataclass(tp):
        return f'a mapping ({tp.__name__})'
    if origin is list:
        return f'a list of {_describe(get_args(tp)[0])}'
    if origin is dict:
        return f'a mapping of {_describe(get_args(tp)[1])}'
    if tp is type(None):
        return 'null'
    return getattr(tp, '__name__', str(tp))


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against the type ``tp`` and return it converted."""
    if tp is Any:
        return value
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        tagged = _tagged_choices(args)
        if tagged and isinstance(value, dict):
            name = value.get('name')
            if name not in tagged:
                raise ConfigError(
                    f'{_join(path, "name")}: got {name!r}; expected one of {", ".join(map(repr, tagged))}',
                )
            return from_dict(tagged[name], value, path)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f'{path}: must not be null; expected {_describe(tp)}')
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, path)
            except ConfigError as err:
                errors.append(err)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(f'{path}: got {value!r}; expected {_describe(tp)}')
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(f'{path}: got {value!r}; expected {_describe(tp)}')
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f'{path}: got {value!r}; expected {_describe(tp)}')
        (item_tp,) = get_args(tp)
        return [_coerce(v, item_tp, _join(path, i)) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f'{path}: got {value!r}; expected {_describe(tp)}')
        _, value_tp = get_args(tp)
        return {str(k): _coerce(v, value_tp, _join(path, str(k))) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads `1e-4` as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            if not math.isfinite(number):
                raise ConfigError(f'{path}: got {value!r}; expected a finite number')
            return number
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f'unsupported config field type {tp!r} at {path}')
    raise ConfigError(f'{path}: got {value!r} ({type(value).__name__}); expected {_describe(tp)}')


def _tagged_choices(args: tuple[Any, ...]) -> dict[str, type]:
    """For a union of dataclasses told apart by a ``name: Literal[...]`` field, map name -> class."""
    choices: dict[str, type] = {}
    for arg in args:
        if arg is type(None):
            continue
        if not dataclasses.is_dataclass(arg):
            return {}
        name_tp = typing.get_type_hints(arg).get('name')
        if get_origin(name_tp) is not Literal:
            return {}
        for literal in get_args(name_tp):
            choices[literal] = arg
    return choices


def from_dict(cls: type[T], data: Any, path: str = '') -> T:
    """Build the dataclass ``cls`` from the mapping ``data``, rejecting unknown keys.

    Args:
        cls: a dataclass type whose field annotations describe the accepted schema.
        data: the mapping read from YAML (``None`` is treated as empty).
        path: dotted prefix used in error messages.

    A class attribute ``REFUSED_KEYS`` (``{key: reason}``) names keys that someone else accepts
    and this schema refuses: the error gives the reason. A field whose metadata holds ``passthrough``
    (a function giving a set of key names, or None for any key) collects the keys of that set
    that are not fields, as written: they are someone else's to check.

    Raises:
        ConfigError: an unknown key, a missing required key or a value of the wrong type.
    """
    if data is None:
        data = {}
    where = path or 'config'
    if not isinstance(data, dict):
        raise ConfigError(f'{where}: got {data!r}; expected a mapping with keys {_field_names(cls)}')
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    passthrough = next((f for f in fields.values() if 'passthrough' in f.metadata), None)
    handed_on = frozenset()
    if passthrough is not None:
        del fields[passthrough.name]
        allowed = passthrough.metadata['passthrough']()  # None: any key
        handed_on = (set(data) if allowed is None else allowed) - set(fields)
    unknown = [k for k in data if k not in fields and k not in handed_on]
    refused = getattr(cls, 'REFUSED_KEYS', {})
    for key in unknown:
        if key in refused:
            raise ConfigError(f'{_join(path, key)}: not supported here: {refused[key]}')
    if unknown:
        key = str(unknown[0])
        close = difflib.get_close_matches(key, [*fields, *handed_on], n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ''
        raise ConfigError(
            f'{_join(path, key)}: unknown key.{hint} Expected one of: {", ".join(sorted({*fields, *handed_on}))}',
        )
    kwargs = {}
    if passthrough is not None:
        kwargs[passthrough.name] = {k: v for k, v in data.items() if k in handed_on}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], _join(path, name))
        elif field.default is _MISSING and field.default_factory is _MISSING:
            raise ConfigError(f'{_join(path, name)}: required key is missing; expected {_describe(hints[name])}')
    instance = cls(**kwargs)
    validate = getattr(instance, 'validate', None)
    if callable(validate):
        validate(path)
    return instance


def _field_names(cls: type) -> str:
    return ', '.join(sorted(f.name for f in dataclasses.fields(cls)))


def to_dict(instance: Any, drop_none: bool = True) -> Any:
    """Inverse of :func:`from_dict`: a plain nested dict.

    ``None`` values are dropped (the consumer's default applies) unless the field's
    metadata says ``keep_none=True`` (an explicit ``None`` the consumer needs). The keys of a
    ``passthrough`` field are written beside the other fields, as they were read.
    """
    if dataclasses.is_dataclass(instance):
        out = {}
        for f in dataclasses.fields(instance):
            value = to_dict(getattr(instance, f.name), drop_none)
            if 'passthrough' in f.metadata:  # handed-on keys go back where they were written
                out.update(value)
                continue
            if value is None and drop_none and not f.metadata.get('keep_none', False):
                continue
            out[f.name] = value
        return out
    if isinstance(instance, list):
        return [to_dict(v, drop_none) for v in instance]
    if isinstance(instance, dict):
        return {k: to_dict(v, drop_none) for k, v in instance.items()}
    return instance
