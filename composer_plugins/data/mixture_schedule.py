"""Which sample of which domain goes where: a pure function of (seed, weights, counters).

The training run is cut into intervals of ``interval_batches`` global batches (one
Composer epoch each). For interval k with domain weights ``w``:

* the domain counts are the largest-remainder apportionment of the interval's samples
  over ``w`` (so realised counts match the weights to within one sample);
* the order of domains inside the interval is a permutation seeded by (seed, k);
* within domain d, the c-th sample ever drawn is ``perm_{d,p}[c mod N_d]`` with pass
  ``p = c // N_d``: no sample repeats before the domain is used up, then a new shuffled
  pass starts.

Everything is determined by (seed, the weights of each interval, the per-domain counters
at the interval start), which the train dataset checkpoints; that is what makes resume exact.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def apportion(weights: np.ndarray, total: int) -> np.ndarray:
    """Largest-remainder (Hamilton) apportionment of ``total`` items over ``weights``.

    Ties of the remainders go to the lower domain index, so the result is deterministic.
    """
    weights = np.asarray(weights, dtype=np.float64)
    quotas = weights / weights.sum() * total
    counts = np.floor(quotas).astype(np.int64)
    remainder = int(total - counts.sum())
    order = np.lexsort((np.arange(len(weights)), -(quotas - counts)))
    counts[order[:remainder]] += 1
    return counts


def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in keys]))


@dataclass(frozen=True)
class IntervalPlan:
    """The samples of one interval, in global order: ``domains[i]`` / ``indices[i]`` for position i."""
    interval: int
    counts: np.ndarray  # per domain
    domains: np.ndarray  # (samples,)
    indices: np.ndarray  # (samples,) sample index inside its domain
    new_passes: tuple[tuple[int, int], ...]  # (domain, pass) pairs that start in this interval


def plan_interval(
    seed: int, interval: int, weights: np.ndarray, counters: np.ndarray, domain_sizes: np.ndarray, samples: int,
) -> IntervalPlan:
    """Plan interval ``interval``: ``samples`` draws given the per-domain ``counters`` at its start."""
    counts = apportion(weights, samples)
    domains = np.repeat(np.arange(len(counts)), counts)
    domains = domains[_rng(seed, 1, interval).permutation(len(domains))]
    indices = np.empty(len(domains), dtype=np.int64)
    new_passes: list[tuple[int, int]] = []
    for domain in range(len(counts)):
        positions = np.nonzero(domains == domain)[0]
        if len(positions) == 0:
            continue
        draws = counters[domain] + np.arange(len(positions))
        size = int(domain_sizes[domain])
        passes = draws // size
        for p in np.unique(passes):
            if p > 0 and (draws % size == 0)[passes == p].any():
                new_passes.append((domain, int(p)))
            perm = _rng(seed, 2, domain, int(p)).permutation(size)
            selected = passes == p
            indices[positions[selected]] = perm[draws[selected] % size]
    return IntervalPlan(interval, counts, domains, indices, tuple(new_passes))
