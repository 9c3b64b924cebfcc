"""Domain-mixture train dataloader (registered as ``domain_mixture``), paper Algorithm 1.

One Composer epoch is one update interval of ``interval_batches`` global batches. At the
start of each epoch the sampler plans the interval from the current domain weights
(:mod:`.mixture_schedule`); the dynamic-loading callback changes the weights after the
evaluation that ends an interval, before the next epoch starts. Sampling happens in the
main process, so any number of workers only fetch ``(domain, index)`` keys, and every rank
takes its own slice of each global batch. The dataset's ``state_dict`` (saved by Composer
with every checkpoint) holds the interval, its weights and the per-domain counters, so a
resumed run continues with exactly the samples an uninterrupted run would have seen.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any, Optional

import numpy as np
import torch
from composer.core import DataSpec
from composer.utils import dist
from streaming import Stream, StreamingDataset
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from composer_plugins.data.mixture_schedule import IntervalPlan, plan_interval
from composer_plugins.data.shard_check import describe_row
from composer_plugins.errors import ShearError
from data_prep.mds import TOKENS_COLUMN

log = logging.getLogger(__name__)

STATE_VERSION = 1


class DomainMixtureDataset(Dataset):
    """Map-style view of several per-domain MDS datasets, addressed by ``(domain, index)`` keys.

    It also owns the mixture state (weights, counters, interval) that Composer checkpoints
    through :meth:`state_dict` / :meth:`load_state_dict`.
    """

    def __init__(
        self,
        domains: Sequence[str],
        local: str,
        split: str,
        weights: Sequence[float],
        samples_per_interval: int,
        seed: int,
        max_seq_len: int,
        remote: Optional[str] = None,
    ) -> None:
        self.domains = list(domains)
        self.max_seq_len = max_seq_len
        self.samples_per_interval = samples_per_interval
        self.seed = seed
        self.sources = [_open_domain(local, remote, domain, split) for domain in self.domains]
        self.domain_sizes = np.array([source.num_samples for source in self.sources], dtype=np.int64)
        self.interval_weights = _check_weights(weights, self.domains)  # of the current interval
        self.next_weights = self.interval_weights  # of the next one (set by dynamic loading)
        self.interval = 0
        self.counters = np.zeros(len(self.domains), dtype=np.int64)
        self.skip = 0
        self.started = False
        self._plan_key: Optional[tuple] = None
        self._plan: Optional[IntervalPlan] = None

    def __len__(self) -> int:
        return self.samples_per_interval

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        domain, index = key
        try:
            tokens = self.sources[domain][int(index)][TOKENS_COLUMN][:self.max_seq_len]
        except (ValueError, OSError, KeyError, IndexError, EOFError) as err:
            where = describe_row(self.sources[domain], int(index))
            raise ShearError(f'train_loader.dataset: domain {self.domains[domain]!r}: {where} cannot be read '
                             f'({type(err).__name__}: {err}); prepare the data again') from err
        return {
            'input_ids': torch.from_numpy(np.asarray(tokens, dtype=np.int64)),
            'domain_id': domain,
            'sample_index': int(index),
        }

    # ----------------------------------------------------------------- mixture state
    def set_weights(self, weights: Sequence[float]) -> None:
        """Weights of the next interval (called by the dynamic-loading callback)."""
        self.next_weights = _check_weights(weights, self.domains)

    def begin_interval(self) -> IntervalPlan:
        """Plan the interval the next epoch iterates.

        After an interval has been iterated, this first advances past it: its counts go
        into the counters and the next weights take effect. Right after construction or
        :meth:`load_state_dict` it plans the current interval again (resume).
        """
        if self.started:
            self.counters = self.counters + self.current_plan().counts
            self.interval += 1
            self.interval_weights = self.next_weights
        self.started = True
        plan = self.current_plan()
        for domain, new_pass in plan.new_passes:
            log.info('Domain %s used up: starting shuffled pass %d', self.domains[domain], new_pass)
        return plan

    def current_plan(self) -> IntervalPlan:
        """The plan of the current interval, computed once per (interval, weights, counters).

        Callbacks ask for it every batch; the domain permutations it draws cost
        O(domain size), so it is cached rather than recomputed.
        """
        key = (self.interval, tuple(self.interval_weights.tolist()), tuple(self.counters.tolist()))
        if self._plan_key != key:
            self._plan = plan_interval(
                self.seed, self.interval, self.interval_weights, self.counters, self.domain_sizes,
                self.samples_per_interval,
            )
            self._plan_key = key
        return self._plan

    def consumed_per_domain(self, samples_in_interval: int) -> np.ndarray:
        """Samples drawn from each domain so far, given how far the current interval got."""
        plan = self.current_plan()
        partial = np.bincount(plan.domains[:samples_in_interval], minlength=len(self.domains))
        return self.counters + partial

    def state_dict(self, num_samples: int, from_beginning: bool) -> dict[str, Any]:
        """Composer calls this at every checkpoint; ``num_samples`` is the current epoch's global count."""
        return {
            'version': STATE_VERSION,
            'domains': self.domains,
            'seed': self.seed,
            'samples_per_interval': self.samples_per_interval,
            'interval': self.interval,
            'interval_weights': self.interval_weights.tolist(),
            'next_weights': self.next_weights.tolist(),
            'counters': self.counters.tolist(),
            'skip': int(num_samples),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get('version') != STATE_VERSION:
            raise ShearError(f'domain_mixture state version {state.get("version")} != {STATE_VERSION}')
        saved = (state['domains'], state['seed'], state['samples_per_interval'])
        if saved != (self.domains, self.seed, self.samples_per_interval):
            raise ShearError(
                'train_loader.dataset: the checkpoint was written with domains/seed/samples per interval '
                f'{saved}, the config now says {(self.domains, self.seed, self.samples_per_interval)}',
            )
        self.interval = int(state['interval'])
        self.interval_weights = np.asarray(state['interval_weights'], dtype=np.float64)
        self.next_weights = np.asarray(state['next_weights'], dtype=np.float64)
        self.counters = np.asarray(state['counters'], dtype=np.int64)
        self.skip = int(state['skip'])
        self.started = False  # the resumed epoch re-plans this same interval, then skips what was seen


class DomainMixtureSampler(DistributedSampler):
    """Yields this rank's ``(domain, index)`` keys of one interval, in global batch order.

    A ``DistributedSampler`` so that Composer accepts it on several ranks; the epoch that
    Composer sets is not used (the interval comes from the dataset's checkpointed state).
    """

    def __init__(self, dataset: DomainMixtureDataset, device_batch_size: int) -> None:
        super().__init__(dataset, num_replicas=dist.get_world_size(), rank=dist.get_global_rank(), shuffle=False)
        self.dataset = dataset
        self.device_batch_size = device_batch_size
        self.world_size = self.num_replicas
        self.global_batch_size = device_batch_size * self.world_size

    def __len__(self) -> int:
        return self.dataset.samples_per_interval // self.world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        dataset = self.dataset
        plan = dataset.begin_interval()
        skip, dataset.skip = dataset.skip, 0
        first_batch = skip // self.global_batch_size
        batches = dataset.samples_per_interval // self.global_batch_size
        for batch in range(first_batch, batches):
            start = batch * self.global_batch_size + self.rank * self.device_batch_size
            for position in range(start, start + self.device_batch_size):
                yield int(plan.domains[position]), int(plan.indices[position])


def collate_lm(samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack fixed-length rows; labels are the inputs (the HF model shifts them).

    ``domain_id`` and ``sample_index`` say where each row came from (the model ignores them).
    """
    input_ids = torch.stack([s['input_ids'] for s in samples])
    return {
        'input_ids': input_ids,
        'attention_mask': torch.ones_like(input_ids),
        'labels': input_ids.clone(),
        'domain_id': torch.tensor([s['domain_id'] for s in samples], dtype=torch.long),
        'sample_index': torch.tensor([s['sample_index'] for s in samples], dtype=torch.long),
    }


def build_domain_mixture_dataloader(
    tokenizer: Any,
    device_batch_size: int,
    dataset: dict[str, Any],
    drop_last: bool = True,
    num_workers: int = 0,
    pin_memory: bool = False,
    prefetch_factor: Optional[int] = None,
    persistent_workers: bool = True,
    timeout: int = 0,
) -> DataSpec:
    """llm-foundry dataloader builder: ``train_loader.name: domain_mixture``."""
    del tokenizer, drop_last  # rows are pre-tokenized; intervals hold whole batches
    # No clean_stale_shared_memory(): it unlinks every streaming segment on the machine, other runs'
    # included. streaming gives each dataset a free prefix and releases what it created at exit.
    cfg = dict(dataset)
    global_batch = int(device_batch_size) * dist.get_world_size()
    mixture = DomainMixtureDataset(
        domains=cfg['domains'],
        local=cfg['local'],
        remote=cfg.get('remote'),
        split=cfg.get('split', 'train'),
        weights=cfg.get('weights') or [1.0 / len(cfg['domains'])] * len(cfg['domains']),
        samples_per_interval=int(cfg['interval_batches']) * global_batch,
        seed=int(cfg.get('seed', 17)),
        max_seq_len=int(cfg['max_seq_len']),
    )
    loader = DataLoader(
        mixture,
        batch_size=int(device_batch_size),
        sampler=DomainMixtureSampler(mixture, int(device_batch_size)),
        collate_fn=collate_lm,
        num_workers=num_workers,
        pin_memory=pin_memory,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        persistent_workers=persistent_workers and num_workers > 0,
        timeout=timeout,
    )
    return DataSpec(loader, get_num_tokens_in_batch=lambda batch: int(batch['input_ids'].numel()))


def _open_domain(local: str, remote: Optional[str], domain: str, split: str) -> StreamingDataset:
    local_dir = os.path.join(local, domain)
    if remote is None and not os.path.isfile(os.path.join(local_dir, split, 'index.json')):
        raise ShearError(f'train_loader.dataset: domain {domain!r} has no MDS index at {local_dir}/{split}/index.json')
    stream = Stream(local=local_dir, remote=None if remote is None else f'{remote.rstrip("/")}/{domain}', split=split)
    return StreamingDataset(streams=[stream], shuffle=False, batch_size=1, replication=None)


def _check_weights(weights: Sequence[float], domains: Sequence[str]) -> np.ndarray:
    values = np.asarray(list(weights), dtype=np.float64)
    if values.shape != (len(domains),) or (values < 0).any() or abs(values.sum() - 1.0) > 1e-6:
        raise ShearError(
            f'domain weights {list(weights)} must be {len(domains)} non-negative numbers summing to 1 '
            f'(domains {list(domains)})',
        )
    return values
