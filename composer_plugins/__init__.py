"""Sheared-LLaMA as a Composer recipe: structured pruning to an exact target shape.

Importing this package is cheap (no torch / Composer imports). Its components reach
llm-foundry's registries through entry points (``setup.py``), or :func:`composer_plugins.registry.register_all`
registers them by hand.
"""

__version__ = '0.1.0'
