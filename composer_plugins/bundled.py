"""The run YAMLs that travel with the package (``yamls/``, installed as ``composer_plugins/yamls``).

``shear demo``, ``shear plan``'s measurements and the benchmarks start from these; they are
found through the installed package, never through the checkout's layout.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from composer_plugins.errors import ShearError


def bundled_yaml(name: str) -> Path:
    """The path of bundled run YAML ``name`` (``'prune.yaml'``, ``'presets/llama2_7b_to_2.7b.yaml'``)."""
    path = Path(str(resources.files('composer_plugins') / 'yamls' / name))
    if not path.is_file():
        raise ShearError(f'{name!r} is not a bundled run YAML (looked in {path.parent}); '
                         'reinstall the package if yamls/ is missing')
    return path


def resolve_run_yaml(name: str) -> Path:
    """``name`` as given when it is a file, else the bundled run YAML of that name (``prune.yaml``).

    Raises:
        ShearError: neither exists; the message lists the bundled YAMLs.
    """
    path = Path(name).expanduser()
    if path.is_file():
        return path
    bundled = Path(str(resources.files('composer_plugins') / 'yamls'))
    if not path.is_absolute() and (bundled / name).is_file():
        return bundled / name
    names = sorted(str(p.relative_to(bundled)) for p in bundled.rglob('*.yaml'))
    raise ShearError(f'config file {name!r} does not exist, and no bundled run YAML has that name '
                     f'(bundled: {", ".join(names)})')
