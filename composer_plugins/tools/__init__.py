"""Tools beside the training path: they use the training library, which never imports them.

``oneshot`` (one-shot pruning), ``planning`` (``shear plan``), ``report``, ``evaluation``
(``shear eval``), ``smollm2`` (the SmolLM2 download-and-convert tool) and ``demo``
(the embedded default run and its corpora).
"""
