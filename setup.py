"""Packaging for the Sheared-LLaMA Composer recipe (`composer_plugins`, console command `shear`)."""
from setuptools import find_packages, setup

# One resolvable, supported stack (see shared/DESIGN.md, "Stack"). Keep the pins exact
# where the APIs we call changed between releases.
INSTALL_REQUIRES = [
    'torch==2.7.0',
    'mosaicml==0.32.1',
    'llm-foundry==0.22.0',
    'mosaicml-streaming==0.12.0',
    'transformers>=4.51.3,<4.52',
    'omegaconf>=2.3,<2.5',
    'wandb<0.19',
    'setuptools<81',  # llm-foundry imports pkg_resources
    'gguf>=0.10',
    'matplotlib>=3.7',
    'zstandard>=0.22',
]

EXTRAS_REQUIRE = {
    'test': ['pytest>=8', 'pytest-timeout>=2.3'],
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
    entry_points={'console_scripts': ['shear=composer_plugins.cli.main:main']},
)
