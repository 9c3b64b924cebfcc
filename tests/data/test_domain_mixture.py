"""The domain-mixture loader and dynamic batch loading, on real MDS shards and real runs."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from composer_plugins.config.load import load_run_config
from composer_plugins.data.mixture_schedule import apportion
from composer_plugins.data.weight_rules import (
    bounded_update,
    constant_update,
    doremi_update,
    lift_to_floor,
    weight_entropy,
)
from composer_plugins.errors import ConfigError
from conftest import MIXTURE_YAML, REPO_ROOT, run_train, subprocess_env, train_command

DOMAINS = ('alpha', 'beta', 'small')


def _read_sample_log(folder: Path, rank: int) -> dict[int, list[tuple[int, int]]]:
    """batch -> [(domain, index)]; a batch seen twice (replayed after a kill) keeps its last record."""
    batches: dict[int, list[tuple[int, int]]] = {}
    for line in (folder / f'rank{rank}.jsonl').read_text().splitlines():
        record = json.loads(line)
        batches[record['batch']] = list(zip(record['domain'], record['index']))
    return batches


def test_doremi_rule_raises_lagging_domains():
    w = np.array([0.5, 0.3, 0.2])
    new = doremi_update(w, losses=np.array([2.0, 3.0, 1.0]), ref_losses=np.array([2.0, 2.0, 2.0]))
    expected = w * np.exp([0.0, 1.0, 0.0])
    assert new == pytest.approx(expected / expected.sum())
    unclamped = doremi_update(w, np.array([2.0, 3.0, 1.0]), np.array([2.0, 2.0, 2.0]), clamp_gap=False)
    assert unclamped[2] < new[2]  # below its reference, the domain loses weight without the clamp
    smoothed = doremi_update(w, np.array([2.0, 3.0, 1.0]), np.array([2.0, 2.0, 2.0]), smoothing=0.5)
    assert smoothed == pytest.approx(0.5 * new + 0.5 / 3)
    assert constant_update(w, np.ones(3), np.zeros(3)) == pytest.approx(w)


def test_bounded_rule_uses_the_relative_gap_and_keeps_every_domain_above_its_floor():
    w = np.array([0.5, 0.3, 0.2])
    refs = np.array([2.0, 4.0, 1.0])
    new = bounded_update(w, losses=np.array([3.0, 4.0, 0.5]), ref_losses=refs, floor=0.3)
    expected = w * np.exp([0.5, 0.0, 0.0])  # (3 - 2) / 2; at and below the reference: 0
    assert new == pytest.approx(expected / expected.sum())  # every domain above the floor 0.1: untouched
    # Gaps of several nats, as right after pruning: the paper's rule collapses the mix in three updates,
    # the bounded rule keeps every domain at or above floor / k.
    paper, bounded = w.copy(), w.copy()
    for _ in range(3):
        losses = np.array([9.0, 4.5, 3.0])
        paper = doremi_update(paper, losses, refs)
        bounded = bounded_update(bounded, losses, refs)
    assert paper.min() < 0.001 and bounded.min() >= 0.3 / 3 - 1e-12
    assert weight_entropy(bounded) > weight_entropy(paper)
    assert weight_entropy(np.ones(4) / 4) == pytest.approx(np.log(4)) and weight_entropy(np.array([1.0, 0.0])) == 0.0


REDPAJAMA = np.array([0.67, 0.045, 0.045, 0.02, 0.045, 0.025, 0.15])  # the paper's starting mixture


def test_bounded_rule_keeps_any_mixture_when_no_domain_lags():
    """A floor, not smoothing: with every gap at 0 the RedPajama start is unchanged after 10 updates
    (it had drifted to within 0.139-0.158 of uniform, with 0.3 of uniform mixed in at every update)."""
    weights = REDPAJAMA.copy()
    refs = np.full(7, 2.0)
    for _ in range(10):
        weights = bounded_update(weights, losses=refs - np.linspace(0.0, 0.5, 7), ref_losses=refs)
    assert weights == pytest.approx(REDPAJAMA, abs=1e-12)


def test_bounded_rule_lifts_only_what_falls_below_the_floor():
    refs = np.full(7, 2.0)
    losses = refs.copy()
    losses[3] = 8.0  # one domain far behind its reference: relative gap 3 a update
    weights = REDPAJAMA.copy()
    for _ in range(3):
        weights = bounded_update(weights, losses, refs, floor=0.3)
        floors = np.minimum(0.3 / 7, REDPAJAMA)
        assert weights.sum() == pytest.approx(1.0) and (weights >= floors - 1e-12).all()
    assert weights[3] > 0.5  # the lagging domain gained ...
    # ... and the small domains stopped at the floor 0.3 / 7, or at their own weight where it was lower (0.025)
    assert weights[[1, 2, 4, 5]] == pytest.approx([0.3 / 7, 0.3 / 7, 0.3 / 7, 0.025])


def test_floor_water_filling():
    lifted = lift_to_floor(np.array([0.9, 0.08, 0.02]), np.array([0.1, 0.1, 0.1]))
    assert lifted == pytest.approx([0.8, 0.1, 0.1])
    assert lift_to_floor(np.array([0.5, 0.3, 0.2]), np.full(3, 0.1)) == pytest.approx([0.5, 0.3, 0.2])
    with pytest.raises(ValueError, match='add up to more than 1'):
        lift_to_floor(np.ones(3) / 3, np.full(3, 0.5))


def test_apportionment_is_largest_remainder():
    assert apportion(np.array([0.5, 0.3, 0.2]), 7).tolist() == [4, 2, 1]
    counts = apportion(np.array([0.37, 0.41, 0.22]), 80)
    assert counts.sum() == 80 and np.abs(counts - np.array([0.37, 0.41, 0.22]) * 80).max() < 1


def test_mixing_follows_weights_and_small_domain_wraps(mixture_dir, tmp_path):
    from composer_plugins.train_entry import run

    cfg = load_run_config(str(MIXTURE_YAML), [
        f'variables.data_dir={mixture_dir}', f'variables.run_dir={tmp_path}', 'save_folder=null',
        'callbacks.dynamic_loading.rule=constant', 'max_duration=40ba',
    ])
    run(cfg)
    batches = _read_sample_log(tmp_path / 'samples', 0)
    assert sorted(batches) == list(range(40))
    per_interval = 10 * 8
    for interval in range(4):
        keys = [key for b in range(interval * 10, (interval + 1) * 10) for key in batches[b]]
        counts = Counter(domain for domain, _ in keys)
        assert [counts[d] for d in range(3)] == apportion(np.array([0.4, 0.4, 0.2]), per_interval).tolist()
    drawn: dict[int, list[int]] = {0: [], 1: [], 2: []}
    for b in range(40):
        for domain, index in batches[b]:
            drawn[domain].append(index)
    small = drawn[2]  # 40 rows, 16 per interval: wraps into a second pass in interval 3
    assert len(small) == 64
    assert sorted(small[:40]) == list(range(40))  # a whole pass before any repeat
    assert len(set(small[40:])) == 24 and small[40:] != small[:24]  # a new shuffled pass
    for domain in (0, 1):
        assert len(set(drawn[domain])) == len(drawn[domain])  # big domains never repeat


def test_sigkill_resume_replays_the_same_samples_per_rank(mixture_dir, tmp_path):
    """composer -n 2, num_workers=2, doremi updates every 10 batches; kill after the ba20 checkpoint. ``small``
    (40 rows, about 20% of 8 x 60 samples) is used up and starts new shuffled passes, after the kill too."""
    total = 60
    common = [f'variables.data_dir={mixture_dir}', f'max_duration={total}ba', 'train_loader.num_workers=2',
              'train_loader.prefetch_factor=2', 'save_interval=10ba', 'autoresume=true',
              'save_num_checkpoints_to_keep=-1', 'global_train_batch_size=8']

    def args(name: str) -> list[str]:
        return [*common, f'run_name={name}', f'variables.run_dir={tmp_path / name}',
                f'save_folder={tmp_path / name / "ckpt"}',
                f'callbacks.sample_log.out_dir={tmp_path / name / "samples"}']

    run_train(*args('straight'), nproc=2, yaml=MIXTURE_YAML)

    proc = subprocess.Popen(train_command(*args('killed'), nproc=2, yaml=MIXTURE_YAML), cwd=REPO_ROOT,
                            env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    checkpoint = tmp_path / 'killed' / 'ckpt' / 'ep1-ba20-rank0.pt'
    try:
        deadline = time.monotonic() + 300
        while not checkpoint.exists():
            assert proc.poll() is None, f'run ended ({proc.returncode}) before {checkpoint.name}'
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not (tmp_path / 'killed' / 'ckpt' / f'ep{total // 10 - 1}-ba{total}-rank0.pt').exists(), 'finished first'

    run_train(*args('killed'), nproc=2, yaml=MIXTURE_YAML)
    for rank in (0, 1):
        straight = _read_sample_log(tmp_path / 'straight' / 'samples', rank)
        resumed = _read_sample_log(tmp_path / 'killed' / 'samples', rank)
        assert sorted(straight) == sorted(resumed) == list(range(total))
        assert all(straight[b] == resumed[b] for b in range(total)), rank
    first = _read_sample_log(tmp_path / 'straight' / 'samples', 0)[25]
    second = _read_sample_log(tmp_path / 'straight' / 'samples', 1)[25]
    assert not set(first) & set(second)  # ranks draw distinct samples
    final = f'ep{total // 10 - 1}-ba{total}-rank0.pt'
    state_a = torch.load(tmp_path / 'straight' / 'ckpt' / final, weights_only=False)['state']['dataset_state']
    state_b = torch.load(tmp_path / 'killed' / 'ckpt' / final, weights_only=False)['state']['dataset_state']
    assert state_a['train'] == state_b['train']
    assert state_a['train']['next_weights'] != [0.4, 0.4, 0.2]  # doremi moved the weights


@pytest.mark.parametrize(('override', 'message'), [
    ('train_loader.dataset.weights=[0.5,0.4,0.2]', 'train_loader.dataset.weights: [0.5, 0.4, 0.2] must be'),
    ('train_loader.dataset.weights=[0.5,0.5]', 'train_loader.dataset.weights: 2 values for 3 domains'),
    ('train_loader.dataset.domains=[alpha,beta,gamma]', "domain 'gamma' has no MDS index"),
    ('eval_interval=5ba', "the domain_mixture loader needs '10ba'"),
    ('train_loader.dataset.weights=[.nan,0.5,0.5]', 'train_loader.dataset.weights[0]: got nan; expected a finite'),
    ('train_loader.dataset.weights=[-0.5,0.5,1.0]', "train_loader.dataset.weights: domain 'alpha' has -0.5"),
    ('callbacks.dynamic_loading.ref_losses.alpha=.nan', "ref_losses: domain 'alpha' has nan; expected a finite"),
    ('callbacks.dynamic_loading.ref_losses.gamma=2.0', "ref_losses: its domains must be the run's ['alpha', 'beta', "
                                                       "'small']; unknown: ['gamma']"),
])
def test_bad_mixture_config_is_one_clear_error(mixture_dir, override, message):
    with pytest.raises(ConfigError, match=__import__('re').escape(message)):
        load_run_config(str(MIXTURE_YAML), [f'variables.data_dir={mixture_dir}', override])


def test_domain_weights_files_hold_only_finite_non_negative_weights(tmp_path):
    from composer_plugins.data.domain_weights import per_domain_values, read_domain_weights, write_domain_weights
    from composer_plugins.errors import ShearError

    with pytest.raises(ConfigError, match=r"unknown: \['gamma'\]; missing: \['beta'\]"):
        per_domain_values({'alpha': 1.0, 'gamma': 2.0}, ['alpha', 'beta'], 'ref_losses')

    path = tmp_path / 'domain_weights.json'
    write_domain_weights(path, 10, {'alpha': 0.5, 'beta': 0.5})
    with pytest.raises(ShearError, match='not finite and non-negative'):
        write_domain_weights(path, 20, {'alpha': float('nan'), 'beta': 0.5})
    assert read_domain_weights(path, ['alpha', 'beta'], 'weights_from') == [0.5, 0.5]  # the good file stayed
    path.write_text('{"batch": 3, "domains": {"alpha": NaN, "beta": 0.5}}')  # a file written elsewhere
    with pytest.raises(ConfigError, match="weights_from .*: domain 'alpha' has nan"):
        read_domain_weights(path, ['alpha', 'beta'], 'weights_from')


def test_remote_shards_are_streamed_into_the_local_cache(mixture_dir, tmp_path):
    """A remote (here a folder standing in for an object store) is read through mosaicml-streaming."""
    from composer_plugins.data.mixture_loader import DomainMixtureDataset

    common = dict(domains=list(DOMAINS), split='train', weights=[0.4, 0.4, 0.2], samples_per_interval=80, seed=17,
                  max_seq_len=128)
    local = DomainMixtureDataset(local=str(mixture_dir), **common)
    remote = DomainMixtureDataset(local=str(tmp_path / 'cache'), remote=str(mixture_dir), **common)
    assert remote.domain_sizes.tolist() == local.domain_sizes.tolist() == [600, 600, 40]
    for key in [(0, 0), (1, 599), (2, 17)]:
        assert torch.equal(remote[key]['input_ids'], local[key]['input_ids'])
    assert any((tmp_path / 'cache' / 'small' / 'train').glob('shard.*.mds'))  # downloaded on access


def test_weights_respond_to_the_loss_gap(mixture_dir, tmp_path):
    """'small' sits far above its reference: doremi raises its weight and closes the gaps faster than constant."""
    from composer.loggers import InMemoryLogger

    from composer_plugins.train_entry import run

    refs = '{alpha: 9.0, beta: 9.0, small: 0.5}'
    results = {}
    for rule in ('doremi', 'constant'):
        cfg = load_run_config(str(MIXTURE_YAML), [
            f'variables.data_dir={mixture_dir}', f'variables.run_dir={tmp_path / rule}', 'save_folder=null',
            f'callbacks.dynamic_loading.rule={rule}', f'callbacks.dynamic_loading.ref_losses={refs}',
            'max_duration=60ba', 'loggers={inmemory: {}}', 'python_log_level=warning',
        ])
        trainer = run(cfg)
        data = next(d for d in trainer.logger.destinations if isinstance(d, InMemoryLogger)).data
        results[rule] = data
    doremi, constant = results['doremi'], results['constant']
    small_weights = [value for _, value in doremi['data/weight/small']]
    assert small_weights[-1] > 0.5 > 0.2  # started at 0.2
    assert all(b >= a for a, b in zip(small_weights, small_weights[1:]))  # only its gap is positive
    assert [value for _, value in constant['data/weight/small']] == [0.2] * len(small_weights)

    def final_gap(data):
        reference = {'alpha': 9.0, 'beta': 9.0, 'small': 0.5}
        return sum(max(data[f'eval/{d}/loss'][-1][1] - ref, 0.0) for d, ref in reference.items())

    assert final_gap(doremi) < final_gap(constant)
    assert doremi['data/samples/small'][-1][1] > constant['data/samples/small'][-1][1]


@pytest.mark.slow  # two training processes at once: 40 s on 2 cores
def test_two_concurrent_runs_keep_their_own_shared_memory_and_samples(mixture_dir, tmp_path):
    """Two mixture runs on one machine, 2 workers each, the second started while the first trains, and a
    third dataset alive in this process: both runs finish with the same samples (same seed, so the same
    order), and none deletes the shared memory of another (the third dataset's segments survive)."""
    from streaming import StreamingDataset

    held = StreamingDataset(local=str(mixture_dir / 'alpha' / 'train'), shuffle=False, batch_size=1)
    prefix = f'{held._shm_prefix_int:06}_'
    segments = sorted(name for name in os.listdir('/dev/shm') if name.startswith(prefix))
    assert segments
    common = [f'variables.data_dir={mixture_dir}', 'max_duration=30ba', 'train_loader.num_workers=2',
              'train_loader.prefetch_factor=2', 'save_folder=null', 'eval_subset_num_batches=1']

    def start(name: str) -> subprocess.Popen:
        args = [*common, f'variables.run_dir={tmp_path / name}', f'callbacks.sample_log.out_dir={tmp_path / name}']
        return subprocess.Popen(train_command(*args, yaml=MIXTURE_YAML), cwd=REPO_ROOT, env=subprocess_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    first = start('first')
    deadline = time.monotonic() + 240
    while not (tmp_path / 'first' / 'rank0.jsonl').exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    second = start('second')
    outputs = [proc.communicate(timeout=300)[0] for proc in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], [out[-3000:] for out in outputs]
    assert sorted(name for name in os.listdir('/dev/shm') if name.startswith(prefix)) == segments
    assert held[0]['tokens'].size > 0
    samples = [_read_sample_log(tmp_path / name, 0) for name in ('first', 'second')]
    assert sorted(samples[0]) == list(range(30)) and samples[0] == samples[1]


def test_source_offset_references_are_fitted_on_the_first_evaluation(mixture_dir, tmp_path):
    """``ref_losses: {source_losses: S}``: the first evaluation sets c = mean(L - S); every update reads S + c."""
    from composer.loggers import InMemoryLogger

    from composer_plugins.train_entry import run

    source = {'alpha': 1.0, 'beta': 1.5, 'small': 0.5}
    cfg = load_run_config(str(MIXTURE_YAML), [
        f'variables.data_dir={mixture_dir}', f'variables.run_dir={tmp_path}', 'save_folder=null',
        'callbacks.dynamic_loading.rule=bounded', 'callbacks.dynamic_loading.ref_losses=null',
        'callbacks.dynamic_loading.ref_losses={source_losses: {alpha: 1.0, beta: 1.5, small: 0.5}}',
        'max_duration=30ba', 'loggers={inmemory: {}}', 'python_log_level=warning',
    ])
    data = next(d for d in run(cfg).logger.destinations if isinstance(d, InMemoryLogger)).data
    first = {d: data[f'eval/{d}/loss'][0][1] for d in source}
    offset = sum(first[d] - source[d] for d in source) / len(source)
    assert [value for _, value in data['data/ref_offset']] == pytest.approx([offset] * 3, rel=1e-9)
    for update in range(3):  # one update per 10-batch interval, each against S + c
        for d in source:
            loss = data[f'eval/{d}/loss'][update][1]
            assert data[f'data/gap/{d}'][update][1] == pytest.approx(loss - source[d] - offset, abs=1e-9)
    assert sum(data[f'data/gap/{d}'][0][1] for d in source) == pytest.approx(0.0, abs=1e-9)  # first gaps: mean 0


@pytest.mark.parametrize(('override', 'message'), [
    ('{source_losses: {alpha: 1.0, beta: 1.5}}',
     "callbacks.dynamic_loading.ref_losses.source_losses: its domains must be the run's ['alpha', 'beta', 'small']"),
    ('{source_losses: [1.0, .nan, 1.0]}',
     "callbacks.dynamic_loading.ref_losses.source_losses: domain '#1' has nan; expected a finite number"),
])
def test_bad_source_offset_references_fail_at_load(mixture_dir, override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_run_config(str(MIXTURE_YAML), [f'variables.data_dir={mixture_dir}',
                                            'callbacks.dynamic_loading.ref_losses=null',
                                            f'callbacks.dynamic_loading.ref_losses={override}'])


def test_an_override_merged_into_the_per_domain_references_names_the_fix(mixture_dir):
    """mixture_tiny.yaml holds ``ref_losses: {alpha: .., beta: .., small: ..}``; an override of another form
    merges into it (OmegaConf), and the error says to null the key first rather than "unknown key"."""
    with pytest.raises(ConfigError) as err:
        load_run_config(str(MIXTURE_YAML), [f'variables.data_dir={mixture_dir}',
                                            'callbacks.dynamic_loading.rule=bounded',
                                            'callbacks.dynamic_loading.ref_losses={source_losses: [1.0, 1.5, 0.5]}'])
    message = str(err.value)
    assert "holds both 'source_losses' and per-domain losses for ['alpha', 'beta', 'small']" in message
    assert 'give callbacks.dynamic_loading.ref_losses=null before the new form' in message
