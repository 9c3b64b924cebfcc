"""Targeted structured pruning (Sheared-LLaMA, Xia et al. 2023, arXiv 2310.06694), pure torch.

* :mod:`.hard_concrete` -- hard concrete L0 gates (Louizos et al. 2018);
* :mod:`.shapes` -- model shapes, exact parameter counts, target checks;
* :mod:`.masks` -- the mask set of one model, expected sparsities and parameter counts;
* :mod:`.lagrangian` -- the Lagrangian sparsity constraint (paper eq. 2 / eq. 3).

This package never imports Composer, llm-foundry or transformers; ``config`` and ``shapes``
import no torch either, so that a run's config is checked in seconds. Import the modules.
"""
