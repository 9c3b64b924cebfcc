"""Packaging for the Sheared-LLaMA Composer recipe (`composer_plugins`, console command `shear`)."""
import runpy
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
# The entry points are composer_plugins/registry.py's table (that module imports nothing at load).
ENTRY_POINTS = runpy.run_path(str(HERE / 'composer_plugins' / 'registry.py'))['entry_point_groups']()

# One resolvable, supported stack (see shared/DESIGN.md, "Stack"). Keep the pins exact
# where the APIs we call changed between releases.
INSTALL_REQUIRES = [
    'torch==2.7.0',
    'mosaicml==0.32.1',
    'llm-foundry==0.22.0',
    'mosaicml-streaming==0.12.0',
    'transformers>=4.51.3,<4.52',
    'accelerate>=0.26',  # init_empty_weights: models built with empty parameters, then assigned (export, checkpoints)
    'omegaconf>=2.3,<2.5',
    'wandb<0.19',
    # `shear wandb-dashboard` (W&B's own workspace builder); 0.4.8+ need wandb>=0.28.2, 0.4.5 works with 0.18.x
    'wandb-workspaces==0.4.5',
    'setuptools<81',  # llm-foundry imports pkg_resources
    'gguf>=0.10',
    'matplotlib>=3.7',
    'zstandard>=0.22',
]

EXTRAS_REQUIRE = {
    # wheel: the packaging test builds this project's wheel without build isolation; ruff: make test lints
    'test': ['pytest>=8', 'pytest-timeout>=2.3', 'wheel>=0.42', 'ruff>=0.6'],
    'eval': ['lm-eval>=0.4.4,<0.5'],
    'gpu': ['flash-attn>=2.6'],
}

setup(
    name='composer-plugins-shearing',
    version='0.1.0',
    description='Targeted structured pruning (Sheared-LLaMA) as a Composer / llm-foundry recipe',
    packages=find_packages(include=['composer_plugins', 'composer_plugins.*', 'data_prep', 'data_prep.*']),
    python_requires='>=3.10',
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    # The run YAMLs travel as package data: composer_plugins/yamls links to the top-level yamls/.
    package_data={'composer_plugins': ['yamls/*.yaml', 'yamls/presets/*.yaml', 'yamls/presets/*.csv']},
    entry_points={'console_scripts': ['shear=composer_plugins.cli.main:main'], **ENTRY_POINTS},
)
