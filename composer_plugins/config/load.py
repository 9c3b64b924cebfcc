"""Read a run YAML plus ``key=value`` overrides into a validated :class:`RunConfig`.

Only omegaconf and this package's dataclasses are imported here, so a bad config
fails in about a second, before torch, Composer or llm-foundry load.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from composer_plugins.config.schema import RunConfig
from composer_plugins.config.typed import from_dict
from composer_plugins.errors import ConfigError


def load_yaml_with_overrides(yaml_path: str, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Merge ``yaml_path`` with dotted ``key=value`` overrides and resolve interpolations."""
    if not os.path.isfile(yaml_path):
        raise ConfigError(f'config file {yaml_path!r} does not exist')
    try:
        cfg = OmegaConf.load(yaml_path)
    except (OmegaConfBaseException, ValueError) as err:  # yaml.YAMLError subclasses Exception, caught below
        raise ConfigError(f'{yaml_path}: cannot parse: {err}') from err
    except Exception as err:  # noqa: BLE001 - yaml parse errors carry their own position info
        raise ConfigError(f'{yaml_path}: cannot parse YAML: {err}') from err
    bad = [o for o in overrides if '=' not in o]
    if bad:
        raise ConfigError(f'override {bad[0]!r}: expected key=value (for example max_duration=10ba)')
    for override in overrides:  # one at a time, so that an error names its override
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([override]))
        except (OmegaConfBaseException, TypeError, ValueError) as err:
            raise ConfigError(f'override {override!r}: cannot merge into {yaml_path}: {err} '
                              '(a mapping and a list do not replace each other: edit the YAML)') from err
    try:
        data = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        raise ConfigError(f'{yaml_path}: {type(err).__name__}: {err}') from err
    if not isinstance(data, dict):
        raise ConfigError(f'{yaml_path}: expected a mapping at the top level')
    data.pop('variables', None)  # only used for interpolation, already resolved
    return data


def load_run_config(yaml_path: str, overrides: Sequence[str] = ()) -> RunConfig:
    """Load and validate a run config; raises :class:`ConfigError` naming the bad key."""
    return from_dict(RunConfig, load_yaml_with_overrides(yaml_path, overrides))
