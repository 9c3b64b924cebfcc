"""One-shot structured pruning from activation importance (``shear prune-oneshot``)."""
