"""The package's layering, read from every import statement (function-local ones included).

* ``data_prep`` is the ground floor: it imports nothing of ``composer_plugins``.
* The training library (``composer_plugins`` but ``tools/`` and ``cli/``) imports neither the tools nor the CLI.
* The tools do not import the CLI.
* Nothing in either package finds files through the checkout's layout (``__file__``).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO_ROOT

PACKAGES = ('composer_plugins', 'data_prep')


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob('*.py')):
            if 'yamls' in path.relative_to(REPO_ROOT).parts:
                continue
            parts = list(path.relative_to(REPO_ROOT).with_suffix('').parts)
            if parts[-1] == '__init__':
                parts.pop()
            found['.'.join(parts)] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> set[str]:
    """Every module name ``module`` imports, absolute or relative, at any depth."""
    names = set()
    package = module if path.name == '__init__.py' else module.rpartition('.')[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.split('.')[:len(package.split('.')) - node.level + 1]
                base = '.'.join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f'{base}.{alias.name}' for alias in node.names)
    return names


def _floor(module: str) -> str:
    if module.startswith('data_prep'):
        return 'data_prep'
    for part in ('tools', 'cli'):
        if module.startswith(f'composer_plugins.{part}'):
            return part
    return 'library'


FORBIDDEN = {
    'data_prep': ('composer_plugins',),
    'library': ('composer_plugins.tools', 'composer_plugins.cli'),
    'tools': ('composer_plugins.cli',),
    'cli': (),
}


def test_the_modules_were_found():
    assert {'data_prep.prep', 'composer_plugins.train_entry', 'composer_plugins.tools.demo.pipeline',
            'composer_plugins.cli.main'} <= set(MODULES)


@pytest.mark.parametrize('module', sorted(MODULES))
def test_imports_run_one_way(module):
    floor = _floor(module)
    wrong = sorted(name for name in _imports(module, MODULES[module])
                   if any(name == banned or name.startswith(banned + '.') for banned in FORBIDDEN[floor]))
    assert not wrong, f'{module} ({floor}) imports {wrong}'


def test_no_module_finds_files_through_the_checkout():
    offenders = [str(path.relative_to(REPO_ROOT)) for path in MODULES.values() if '__file__' in path.read_text()]
    assert not offenders, offenders
