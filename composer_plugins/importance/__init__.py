"""Activation importance of heads, FFN channels and hidden dimensions, and the top-k masks it selects.

Learned pruning starts its masks from these scores (``mask_learning.init: importance``);
the one-shot tool (:mod:`composer_plugins.tools.oneshot`) prunes with them directly.
"""
