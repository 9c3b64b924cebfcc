"""Let go of the models torch's distributed state-dict helpers keep alive, after a training run.

In torch 2.7, ``torch.distributed.checkpoint.state_dict._get_fqns(model, name)`` is wrapped in
``functools.cache``; Composer calls it on every checkpoint save, so the cache holds a strong reference to
each model it saved, and through the model's parameters and the optimizer state they key, about 1 GB per
run of a 74M-parameter model in fp32 with Adam. A process that trains several times (``shear demo``,
``benchmarks/quality.py``) grew by that much per run until the OOM killer stopped a 7-arm study at
24 GB. torch removed the cache upstream (pytorch/pytorch#149354); with a torch that has no such cache
this does nothing.
"""
from __future__ import annotations

import gc


def release_state_dict_cache() -> None:
    """Clear ``_get_fqns``'s cache (where this torch has one) and collect the cycles it kept alive."""
    from torch.distributed.checkpoint import state_dict

    cache_clear = getattr(getattr(state_dict, '_get_fqns', None), 'cache_clear', None)
    if cache_clear is not None:
        cache_clear()
    gc.collect()
