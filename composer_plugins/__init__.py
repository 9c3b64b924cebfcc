"""Sheared-LLaMA as a Composer recipe: structured pruning to an exact target shape.

Importing this package is cheap (no torch / Composer imports); call
:func:`composer_plugins.registry.register_all` to register models, dataloaders,
callbacks and tokenizers in llm-foundry's registries.
"""

__version__ = '0.1.0'
