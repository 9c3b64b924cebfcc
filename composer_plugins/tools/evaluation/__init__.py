"""Evaluation of exported models with lm-evaluation-harness (``shear eval``)."""
