"""Does it work? L0 pruning vs one-shot pruning vs training from scratch, same shape, same token budget.

Source SmolLM2-135M (``shear smollm2``), target the ``yamls/prune.yaml`` shape (49% of the
non-embedding parameters), data the embedded 3-domain corpus (``--corpus wide``: its 6-domain
form, for the mixing rules; or ``--data``). Arms, each
with the same number of training tokens ``B = (prune_steps + continue_steps) x batch x seq``:

(a) L0 pruning as ``yamls/prune.yaml`` ships it (masks started from one-shot importance,
    ``init: importance``) with dynamic batch loading (``prune_steps``), export, continued
    pre-training with dynamic loading (``continue_steps``, starting from the pruning run's
    final weights);
(e) the same from the paper's dense start (``init: dense``, mask and multiplier lr 0.5, the
    target ramped over the first fifth);
(b) (a) with constant domain weights in both stages, at the initial mixture;
(u) (a) with constant uniform domain weights in both stages;
(o) (a) with the references a user with one source model gets (``ref_losses: {source_losses: ...}``: the
    source's per-domain losses moved by one offset, fitted at each run's first evaluation) in place of the
    source's raw losses.

The study of mixing rules (``--arms a,b,u,o``, on ``--corpus embedded`` and ``--corpus wide``, and with
``--start skewed``: the first domain at 0.6 as RedPajama's ``cc``) scores the held-out loss both as the
uniform average over domains and as the average weighted by the initial mixture.
(c) one-shot pruning (``shear prune-oneshot``, activation importance on ``calib_rows``
    calibration rows, forward passes only), then continued pre-training with dynamic
    loading on the whole budget;
(d) the target shape initialised at random and trained with dynamic loading on the whole
    budget (``--scratch-lr``, a usual from-scratch rate, not tuned here);
(f) (c) with knowledge distillation from the source in continued pre-training
    (``distillation: {teacher: source}``, alpha ``--kd-alpha``, T 1);
(g) (a) with the same distillation in its continued pre-training (the pruning stage is (a)'s own,
    reused when (a) ran with the same seed);
(h) (a) with the pruning-stage settings that ``yamls/prune.yaml`` ships since 2026-12-01 given
    explicitly (``init_margin`` 8: sampled masks that rarely scale a kept unit down; the weights
    at the continued stage's 2e-4 with 3 warm-up batches). Runs of (a) in an ``--out`` folder
    made before that date used margin 5 and lr 1e-4; a fresh (a) needs a fresh ``--out``.

The study of learned masks at equal tokens *and* equal FLOPs (``--arms p,q,r,s --prune-steps 200``):

(p) one-shot + continued pre-training (the baseline: (c) in its own folders), and (p=) the same
    with enough extra continued steps to match the FLOPs of an L0 arm (whose pruning stage
    trains the full-size source);
(q) the importance masks frozen (``mask_learning.lr: 0``), trained at full size, then exported
    and continued: what an L0 run is when its masks do not learn;
(r) L0 from importance init with the code's learning defaults (clamp [-log 100, log 1000], kept and
    pruned units at its ends, mask lr 0.5);
(s) L0 from the paper's dense start.

For every L0 arm the table after the losses gives the units whose decisions changed during
pruning (``l0/changed_units/<mask>`` at the end of the pruning run).

Every dynamic arm mixes with ``--rule`` (default ``bounded``, the YAMLs'; ``doremi`` is the
paper's, whose runs use folders without a rule suffix).

plus reference rows: the source and the pruned-but-untrained models of the arms. Every arm
runs once per ``--seeds`` seed (data order, gate noise); ``--arms`` picks the arms (default
a, e, c, f, g; b and d on request). Each arm's run time is recorded beside it, and its training
FLOPs: ``6 N D`` for the student's forward and backward over ``D`` tokens (``N`` its parameters,
the tied embedding counted once as the LM head's matmul; attention's sequence term left out, as
at 256 tokens it is a few per cent), ``2 N D`` for forward-only passes (the teacher's, one-shot's
and the importance init's calibration).

Held-out loss: with the embedded corpus, the last ``heldout_fraction`` of each domain's
documents never reach training; they are prepared apart (``heldout/``) and only used for
the final table. Dynamic loading and in-training evaluation read the ``eval`` split of the
training data, which is also disjoint from the held-out documents. With ``--data`` give a
held-out prepared folder with ``--heldout`` (else its eval split is used, with a warning).

    PYTHONPATH=. python benchmarks/quality.py --out runs/quality [--prune-steps 40 --continue-steps 60]

Writes OUT/quality.md (the table, and the mixture of every dynamic run: its lowest domain weight,
the domains that fell below 1 %, its final entropy), OUT/quality.json, OUT/report/ (``shear report``
of all runs).
An arm whose final model exists is skipped, so an interrupted comparison can be rerun.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from composer_plugins.pruning.shapes import ModelShape, count_params
from composer_plugins.tools.demo import stages
from composer_plugins.tools.demo.embedded_corpus import DOMAINS, WIDE_DOMAINS
from composer_plugins.tools.report.metrics import load_run

log = logging.getLogger('benchmarks.quality')

REPO = Path(__file__).resolve().parents[1]
PRUNE_YAML = REPO / 'yamls' / 'prune.yaml'
CONTINUE_YAML = REPO / 'yamls' / 'continue_pretrain.yaml'
SEQ_LEN = 256  # the YAMLs' max_seq_len
BATCH = 4  # the YAMLs' global_train_batch_size
CORPORA = {'embedded': DOMAINS, 'wide': WIDE_DOMAINS}
PRUNE_YAML_WEIGHTS = [0.4, 0.3, 0.3]  # prune.yaml's initial domain weights (code, docs, licenses)
STARVED = 0.01
"""A domain below this weight is reported as starved: a batch of 4 rows then draws from it once in 25 batches."""


SKEWED_FIRST = 0.6
"""``--start skewed``: the first domain's initial weight, as RedPajama's ``cc`` (0.67); the others share the rest."""


def initial_weights(domains: tuple[str, ...], start: str = 'default') -> list[float]:
    """The runs' initial domain weights: ``default``: prune.yaml's weights for its own three domains, uniform for
    any other domain list; ``skewed``: the first domain at :data:`SKEWED_FIRST`, the others equal."""
    if start == 'skewed':
        return [SKEWED_FIRST] + [(1 - SKEWED_FIRST) / (len(domains) - 1)] * (len(domains) - 1)
    return PRUNE_YAML_WEIGHTS if domains == DOMAINS else [1 / len(domains)] * len(domains)


def weights_override(weights: list[float]) -> str:
    return str([round(w, 10) for w in weights]).replace(' ', '')
ARM_LABELS = {'a': 'L0, init: importance (the default) + dynamic', 'e': 'L0, init: dense (paper) + dynamic',
              'b': 'L0, init: importance + constant weights (the initial mixture)', 'c': 'one-shot',
              'd': 'random init', 'u': 'L0, init: importance + constant uniform weights',
              'o': 'L0, init: importance + dynamic, references: source losses + offset',
              'f': 'one-shot + KD', 'g': 'L0, init: importance + dynamic + KD',
              'h': 'L0, init: importance, margin 8, weights lr 2e-4 + dynamic',
              'i': 'L0, init: importance, margin 8, weights lr 2e-4 + dynamic + KD',
              'p': 'one-shot (baseline)', 'q': 'importance masks frozen (mask lr 0), trained at full size',
              'r': 'L0, init: importance (learning defaults)', 's': 'L0, init: dense (paper)'}
FROZEN_MASK_OVERRIDES = ['callbacks.mask_learning.lr=0']
LEARNING_MASK_OVERRIDES = ['callbacks.mask_learning.lr=0.5']
"""Arm (r): the code's default mask rate (``yamls/prune.yaml`` freezes the masks for its 30-batch demo)."""
DEFAULT_ARMS = 'a,e,c,f,g'


def forward_flops(params: int, tokens: int) -> float:
    """``2 N D``: one forward pass of ``params`` parameters over ``tokens`` tokens."""
    return 2.0 * params * tokens


def train_flops(params: int, tokens: int) -> float:
    """``6 N D``: forward and backward (Kaplan et al. 2020, eq. 2.1 without the context term)."""
    return 6.0 * params * tokens


LOW_NOISE_OVERRIDES = ['callbacks.mask_learning.init_margin=8.0', 'optimizer.lr=2.0e-4', 'scheduler.t_warmup=3ba']
"""Arm (h): sampled masks that rarely flip a kept unit, and the continued stage's weight rate in the pruning stage."""


def dense_init_overrides(prune_steps: int) -> list[str]:
    """The paper's dense start, with rates that move the masks to the target within a short run."""
    return ['callbacks.mask_learning.init=dense', 'callbacks.mask_learning.lr=0.5', 'callbacks.lagrangian.lr=0.5',
            f'callbacks.lagrangian.target_warmup={max(1, prune_steps // 5)}ba']


@dataclass
class QualityConfig:
    """Settings of one comparison; an arm takes about 8 minutes on 2 idle CPU cores."""
    out: Path
    data: Optional[Path] = None
    heldout: Optional[Path] = None
    source: Optional[Path] = None
    prune_steps: int = 40
    continue_steps: int = 60
    calib_rows: int = 64
    heldout_rows: int = 16
    heldout_fraction: float = 0.1
    train_rows: int = 300
    scratch_lr: float = 1e-3
    kd_alpha: float = 0.5
    rule: str = 'bounded'
    corpus: str = 'embedded'
    start: str = 'default'
    arms: list[str] = field(default_factory=lambda: DEFAULT_ARMS.split(','))
    seeds: list[int] = field(default_factory=lambda: [17, 18])
    keep_checkpoints: bool = False

    @property
    def budget_steps(self) -> int:
        return self.prune_steps + self.continue_steps

    def equal_flops_steps(self, source_params: int, pruned_params: int) -> int:
        """Whole-budget steps of the pruned shape whose training FLOPs equal an L0 arm's (pruning at the
        source's size, then continued): ``prune_steps * N_source / N_pruned + continue_steps``, rounded."""
        return round(self.prune_steps * source_params / pruned_params) + self.continue_steps

    @property
    def domains(self) -> tuple[str, ...]:
        return CORPORA[self.corpus]


@dataclass
class Row:
    """One line of the table."""
    name: str
    params: int
    losses: dict[str, float]
    trained_tokens: int
    seconds: Optional[float] = None
    flops: Optional[float] = None

    @property
    def average(self) -> float:
        return sum(self.losses.values()) / len(self.losses)

    def weighted_average(self, weights: dict[str, float]) -> float:
        """The held-out loss averaged with the initial mixture's weights (what a user of that mixture reads)."""
        return sum(weights[d] * loss for d, loss in self.losses.items()) / sum(weights[d] for d in self.losses)


@dataclass
class Mixing:
    """The domain weights one dynamic run went through (``data/weight/<domain>`` of its metrics)."""
    run: str
    lowest: float
    lowest_domain: str
    starved: list[str]
    final: dict[str, float]
    final_entropy: float


def read_mixing(run_dir: Path) -> Optional[Mixing]:
    """The run's mixture statistics, or None when it logged no weight update."""
    if not (run_dir / 'metrics.jsonl').is_file():
        return None
    run = load_run(run_dir)
    weights = {domain: run.series(f'data/weight/{domain}')[1] for domain in run.suffixes('data/weight/')}
    if not weights:
        return None
    lowest_domain = min(weights, key=lambda d: min(weights[d]))
    starved = sorted(d for d, values in weights.items() if min(values) < STARVED)
    return Mixing(run_dir.name, min(weights[lowest_domain]), lowest_domain, starved,
                  {d: values[-1] for d, values in weights.items()}, run.series('data/weight_entropy')[1][-1])


def read_changed_units(run_dir: Path) -> dict[str, int]:
    """``l0/changed_units/<mask>`` at the end of a pruning run (empty when it logged none)."""
    if not (run_dir / 'metrics.jsonl').is_file():
        return {}
    run = load_run(run_dir)
    return {mask: int(run.series(f'l0/changed_units/{mask}')[1][-1]) for mask in run.suffixes('l0/changed_units/')}


@dataclass
class Comparison:
    config: dict
    initial: dict[str, float] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    mixing: list[Mixing] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    changed_units: dict[str, dict[str, int]] = field(default_factory=dict)


def split_corpus(raw: Path, out: Path, fraction: float,
                 domains: tuple[str, ...] = DOMAINS) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """Train / held-out JSON lines per domain: the last ``fraction`` of each domain's documents is held out."""
    out.mkdir(parents=True, exist_ok=True)
    train, heldout = {}, {}
    for domain in domains:
        lines = (raw / f'{domain}.jsonl').read_text(encoding='utf-8').splitlines()
        cut = len(lines) - max(3, int(len(lines) * fraction))
        for part, chosen, store in (('train', lines[:cut], train), ('heldout', lines[cut:], heldout)):
            path = out / f'{domain}.{part}.jsonl'
            path.write_text('\n'.join(chosen) + '\n', encoding='utf-8')
            store[domain] = [path]
    return train, heldout


def model_params(model_dir: Path) -> int:
    from transformers import AutoConfig
    return count_params(ModelShape.from_hf_config(AutoConfig.from_pretrained(model_dir)))


def run_comparison(cfg: QualityConfig) -> Comparison:
    out = cfg.out.resolve()
    result = Comparison(config={k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()})

    def timed(name: str, fn: Callable[[], object]) -> None:
        start = time.monotonic()
        log.info('== %s', name)
        fn()
        result.seconds[name] = round(time.monotonic() - start, 1)
        log.info('== %s done in %.0f s', name, result.seconds[name])

    source = cfg.source or out / 'models' / 'smollm2-135m'
    timed('source model', lambda: stages.build_smollm2(source))
    data, heldout = cfg.data, cfg.heldout
    if data is None:
        raw, split = out / 'corpus', out / 'corpus-split'
        timed('corpus', lambda: stages.build_corpus(raw, cfg.domains))
        train_inputs, heldout_inputs = split_corpus(raw, split, cfg.heldout_fraction, cfg.domains)
        data, heldout = out / 'data', out / 'heldout'
        timed('prep', lambda: (
            stages.prep_shards(train_inputs, source, data, SEQ_LEN, cfg.train_rows * SEQ_LEN, 8 * SEQ_LEN),
            stages.prep_shards(heldout_inputs, source, heldout, SEQ_LEN, SEQ_LEN, cfg.heldout_rows * SEQ_LEN)))
    elif heldout is None:
        log.warning('No --heldout: the final table uses the eval split of --data, which dynamic loading also reads')
        heldout = data

    refs: dict[str, float] = {}
    timed('reference losses', lambda: refs.update(stages.eval_losses(source, data, 8)))
    common = [f'variables.data_dir={data}', stages.ref_losses_override(refs), 'save_overwrite=true']
    domains = list(refs)
    start_weights = weights_override(initial_weights(tuple(domains), cfg.start))
    uniform_weights = weights_override([1 / len(domains)] * len(domains))
    ref_key, raw_refs = stages.ref_losses_override(refs).split('=', 1)
    source_offset_refs = (f'{ref_key}=null',  # replaced, not merged with the raw losses' mapping
                          f'{ref_key}={{source_losses: {raw_refs}}}')
    result.initial = dict(zip(domains, initial_weights(tuple(domains), cfg.start)))
    if tuple(domains) != DOMAINS:
        common.append(f'train_loader.dataset.domains=[{",".join(domains)}]')
    tag = '' if cfg.rule == 'doremi' else f'-{cfg.rule}'  # run folders of another mixing rule
    mixing = '' if cfg.rule == 'doremi' else f' [{cfg.rule} mixing]'
    budget_tokens = cfg.budget_steps * BATCH * SEQ_LEN
    runs: list[Path] = []
    models: dict[str, tuple[Path, int, Optional[float], Optional[float]]] = {'source': (source, 0, None, None)}
    source_params = model_params(source)
    calib_flops = forward_flops(source_params, cfg.calib_rows * SEQ_LEN)
    kd = [f'distillation={{teacher: source, alpha: {cfg.kd_alpha}, temperature: 1.0}}']

    def seeded(seed: int) -> list[str]:
        return [f'seed={seed}', f'train_loader.dataset.seed={seed}']

    def drop_checkpoints(run_dir: Path) -> None:
        """A finished run is read again only through its exported or HF model; its Composer checkpoint (0.9 to
        1.6 GB with the optimizer state) is deleted unless ``--keep-checkpoints``: one study's filled 23 GB."""
        if not cfg.keep_checkpoints:
            shutil.rmtree(run_dir / 'checkpoints', ignore_errors=True)

    def record_seconds(run_dir: Path, started: float) -> None:
        (run_dir / 'arm_seconds.json').write_text(json.dumps({'seconds': round(time.monotonic() - started, 1)}))

    def arm_seconds(run_dir: Path) -> Optional[float]:
        path = run_dir / 'arm_seconds.json'
        return json.loads(path.read_text())['seconds'] if path.is_file() else None

    def prune_stage(arm: str, seed: int, rule: str, mask_overrides: list[str], weights: str) -> Path:
        """The pruning run and its export (skipped when the export exists); returns the run folder."""
        prune_dir = out / f'{arm}{tag}-s{seed}-prune'
        runs.append(prune_dir)
        if (prune_dir / 'exported' / 'config.json').is_file():
            return prune_dir
        stages.train(PRUNE_YAML, [
            *common, *seeded(seed), f'model.pruning.sample_seed={seed}', f'variables.model_dir={source}',
            f'variables.run_dir={prune_dir}', f'max_duration={cfg.prune_steps}ba',
            f'save_interval={cfg.prune_steps}ba', f'callbacks.mask_learning.calibration.rows={cfg.calib_rows}',
            f'train_loader.dataset.weights={weights}',
            *stages.settle_overrides(cfg.prune_steps), *mask_overrides,
            f'callbacks.dynamic_loading.rule={rule}', *stages.interval_overrides(cfg.prune_steps)])
        stages.export(prune_dir / 'checkpoints' / 'latest-rank0.pt', prune_dir / 'exported')
        drop_checkpoints(prune_dir)
        return prune_dir

    def l0_arm(arm: str, seed: int, rule: str, mask_overrides: list[str], prune_arm: Optional[str] = None,
               extra: tuple[str, ...] = (), dense: bool = False, weights: Optional[str] = None,
               ref_overrides: tuple[str, ...] = ()) -> None:
        """``extra``: overrides of the continued stage that add a teacher's forward passes (counted in its FLOPs);
        ``ref_overrides``: overrides of both stages' reference losses."""
        cont_dir = out / f'{arm}{tag}-s{seed}-continue'
        continued = cont_dir / 'hf' / 'huggingface' / f'ba{cfg.continue_steps}'
        label = ARM_LABELS[arm] + ('' if rule == 'constant' else mixing)  # a constant arm does not mix
        prune_tokens, cont_tokens = cfg.prune_steps * BATCH * SEQ_LEN, cfg.continue_steps * BATCH * SEQ_LEN
        pruned_flops = train_flops(source_params, prune_tokens) + (0.0 if dense else calib_flops)
        started = time.monotonic()
        prune_dir = prune_stage(prune_arm or arm, seed, rule, [*mask_overrides, *ref_overrides],
                                weights or start_weights)
        runs.append(cont_dir)
        if prune_arm is None:
            models[f'({arm}) {label}, pruned, untrained, seed {seed}'] = (prune_dir / 'exported', prune_tokens,
                                                                        None, pruned_flops)
        if not (continued / 'config.json').is_file():
            stages.train(CONTINUE_YAML, [
                *common, *seeded(seed), f'variables.model_dir={prune_dir / "exported"}',
                f'variables.prune_run_dir={prune_dir}', f'variables.run_dir={cont_dir}',
                f'max_duration={cfg.continue_steps}ba', f'save_interval={cfg.continue_steps}ba',
                f'callbacks.dynamic_loading.rule={rule}', *stages.interval_overrides(cfg.continue_steps),
                *ref_overrides, *extra])
            record_seconds(cont_dir, started)
            drop_checkpoints(cont_dir)
        else:
            log.info('Arm %s seed %d already done in %s', arm, seed, cont_dir)
        flops = pruned_flops + train_flops(model_params(continued), cont_tokens)
        if extra:
            flops += forward_flops(source_params, cont_tokens)
        models[f'({arm}) {label} + continued, seed {seed}'] = (continued, budget_tokens, arm_seconds(cont_dir), flops)

    def whole_budget_run(run_dir: Path, model_dir: Path, seed: int, *extra: str,
                         steps: Optional[int] = None) -> tuple[Path, Optional[float]]:
        steps = steps or cfg.budget_steps
        runs.append(run_dir)
        final = run_dir / 'hf' / 'huggingface' / f'ba{steps}'
        if (final / 'config.json').is_file():
            log.info('%s already trained', final)
            return final, arm_seconds(run_dir)
        started = time.monotonic()
        stages.train(CONTINUE_YAML, [
            *common, *seeded(seed), f'variables.model_dir={model_dir}', f'variables.run_dir={run_dir}',
            'train_loader.dataset.weights_from=null', f'train_loader.dataset.weights={start_weights}',
            f'max_duration={steps}ba', f'save_interval={steps}ba',
            f'callbacks.dynamic_loading.rule={cfg.rule}', *stages.interval_overrides(steps), *extra])
        record_seconds(run_dir, started)
        drop_checkpoints(run_dir)
        return final, arm_seconds(run_dir)

    def oneshot_arm(seed: int, arm: str = 'c', extra: tuple[str, ...] = (), equal_flops: bool = False) -> None:
        from composer_plugins.tools.oneshot.prune import OneShotConfig, prune_oneshot, read_target
        pruned = out / 'c-oneshot'
        if not (pruned / 'pruning.json').is_file():
            prune_oneshot(OneShotConfig(model=str(source), data=data, target=read_target(str(PRUNE_YAML)),
                                        out=pruned, calib_rows=cfg.calib_rows, force=True))
        models['(c) one-shot pruned, untrained'] = (pruned, 0, None, calib_flops)
        steps = cfg.equal_flops_steps(source_params, model_params(pruned)) if equal_flops else cfg.budget_steps
        suffix = f'-flops{steps}' if equal_flops else ''
        final, seconds = whole_budget_run(out / f'{arm}{tag}-s{seed}-continue{suffix}', pruned, seed, *extra,
                                          steps=steps)
        tokens = steps * BATCH * SEQ_LEN
        flops = calib_flops + train_flops(model_params(pruned), tokens)
        if extra:
            flops += forward_flops(source_params, tokens)
        budget = f' at the FLOPs of an L0 arm ({steps} steps)' if equal_flops else ''
        models[f'({arm}) {ARM_LABELS[arm]}{mixing} + continued{budget}, seed {seed}'] = (final, tokens, seconds, flops)

    def scratch_arm(seed: int) -> None:
        shape_dir = out / 'c-oneshot'  # only its config is used: model.pretrained=false
        if not (shape_dir / 'config.json').is_file():
            oneshot_arm(seed)
        final, seconds = whole_budget_run(out / f'd-s{seed}-scratch', shape_dir, seed, 'model.pretrained=false',
                                          f'optimizer.lr={cfg.scratch_lr}')
        models[f'(d) random init + trained, seed {seed}'] = (final, budget_tokens, seconds,
                                                             train_flops(model_params(shape_dir), budget_tokens))

    arms: dict[str, Callable[[int], None]] = {
        'a': lambda seed: l0_arm('a', seed, cfg.rule, []),
        'e': lambda seed: l0_arm('e', seed, cfg.rule, dense_init_overrides(cfg.prune_steps), dense=True),
        'b': lambda seed: l0_arm('b', seed, 'constant', []),
        'u': lambda seed: l0_arm('u', seed, 'constant', [], weights=uniform_weights),
        'o': lambda seed: l0_arm('o', seed, cfg.rule, [], ref_overrides=source_offset_refs),
        'c': oneshot_arm,
        'd': scratch_arm,
        'f': lambda seed: oneshot_arm(seed, 'f', tuple(kd)),
        'g': lambda seed: l0_arm('g', seed, cfg.rule, [], prune_arm='a', extra=tuple(kd)),
        'h': lambda seed: l0_arm('h', seed, cfg.rule, LOW_NOISE_OVERRIDES),
        'i': lambda seed: l0_arm('i', seed, cfg.rule, LOW_NOISE_OVERRIDES, prune_arm='h', extra=tuple(kd)),
        'p': lambda seed: (oneshot_arm(seed, 'p'), oneshot_arm(seed, 'p', equal_flops=True)),
        'q': lambda seed: l0_arm('q', seed, cfg.rule, FROZEN_MASK_OVERRIDES),
        'r': lambda seed: l0_arm('r', seed, cfg.rule, LEARNING_MASK_OVERRIDES),
        's': lambda seed: l0_arm('s', seed, cfg.rule, dense_init_overrides(cfg.prune_steps), dense=True),
    }
    for arm in cfg.arms:
        for seed in cfg.seeds:
            timed(f'({arm}) {ARM_LABELS[arm]}, seed {seed}', lambda: arms[arm](seed))

    def evaluate() -> None:
        for name, (model_dir, tokens, seconds, flops) in models.items():
            losses = stages.eval_losses(model_dir, heldout, cfg.heldout_rows)
            result.rows.append(Row(name, model_params(model_dir), losses, tokens, seconds, flops))
    timed('held-out evaluation', evaluate)
    result.mixing = [m for m in map(read_mixing, dict.fromkeys(runs)) if m is not None]
    result.changed_units = {run.name: changed for run in dict.fromkeys(runs)
                            if run.name.endswith('-prune') and (changed := read_changed_units(run))}
    timed('report', lambda: stages.report(list(dict.fromkeys(runs)), out / 'report'))
    return result


def markdown_table(result: Comparison) -> str:
    domains = list(result.rows[0].losses)
    weighted = bool(result.initial)
    lines = ['| model | parameters | train tokens | FLOPs | ' + ' | '.join(domains) + ' | average |'
             + (' weighted by the initial mixture |' if weighted else '') + ' arm run time |',
             '|---|---:|---:|---:|' + '---:|' * (len(domains) + 2 + weighted)]
    for row in result.rows:
        cells = ' | '.join(f'{row.losses[d]:.3f}' for d in domains)
        seconds = f'{row.seconds / 60:.1f} min' if row.seconds is not None else ''
        flops = f'{row.flops:.2e}' if row.flops else ''
        weighted_cell = f' {row.weighted_average(result.initial):.3f} |' if weighted else ''
        lines.append(f'| {row.name} | {row.params / 1e6:.1f}M | {row.trained_tokens:,} | {flops} | {cells} '
                     f'| {row.average:.3f} |{weighted_cell} {seconds} |')
    return '\n'.join(lines) + '\n'


def mixing_table(result: Comparison) -> str:
    lines = [f'| run | lowest weight | domains below {STARVED} | final weights | final entropy (nats) |',
             '|---|---:|---|---|---:|']
    for m in result.mixing:
        final = ', '.join(f'{d} {w:.3f}' for d, w in m.final.items())
        lines.append(f'| {m.run} | {m.lowest:.4f} ({m.lowest_domain}) | {", ".join(m.starved) or "none"} | {final} '
                     f'| {m.final_entropy:.3f} |')
    return '\n'.join(lines) + '\n'


def changed_units_table(result: Comparison) -> str:
    masks = sorted({mask for changed in result.changed_units.values() for mask in changed})
    lines = ['| pruning run | ' + ' | '.join(masks) + ' |', '|---|' + '---:|' * len(masks)]
    for run, changed in result.changed_units.items():
        lines.append(f'| {run} | ' + ' | '.join(str(changed.get(m, '')) for m in masks) + ' |')
    return '\n'.join(lines) + '\n'


def write_outputs(result: Comparison, out: Path) -> Path:
    table = markdown_table(result) + '\nDomain weights of the dynamic runs:\n\n' + mixing_table(result)
    if result.changed_units:
        table += '\nUnits whose keep/prune decision changed during pruning (l0/changed_units at its end):\n\n'
        table += changed_units_table(result)
    (out / 'quality.json').write_text(json.dumps({
        'config': result.config, 'seconds': result.seconds, 'initial_weights': result.initial,
        'rows': [{**asdict(row), 'average': row.average} for row in result.rows],
        'mixing': [asdict(m) for m in result.mixing], 'changed_units': result.changed_units}, indent=2) + '\n')
    path = out / 'quality.md'
    path.write_text('# Held-out loss (nats/token) at the same token budget\n\n' + table
                    + f'\nStage seconds: {json.dumps(result.seconds)}\n')
    log.info('Held-out loss (nats/token):\n%s', table)
    return path


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', type=Path, default=Path('runs/quality'))
    parser.add_argument('--data', type=Path, default=None, help='prepared data (default: the embedded corpus)')
    parser.add_argument('--heldout', type=Path, default=None, help='prepared held-out data for the final table')
    parser.add_argument('--source', type=Path, default=None, help='SmolLM2 HF folder (default: shear smollm2)')
    parser.add_argument('--prune-steps', type=int, default=40)
    parser.add_argument('--continue-steps', type=int, default=60)
    parser.add_argument('--calib-rows', type=int, default=64)
    parser.add_argument('--heldout-rows', type=int, default=16)
    parser.add_argument('--scratch-lr', type=float, default=1e-3)
    parser.add_argument('--kd-alpha', type=float, default=0.5, help='distillation alpha of arms f and g')
    parser.add_argument('--corpus', choices=sorted(CORPORA), default='embedded',
                        help='embedded corpus without --data: its 3 domains, or wide, 6 (default embedded)')
    parser.add_argument('--start', choices=('default', 'skewed'), default='default',
                        help=f'initial domain weights: prune.yaml\'s (uniform on 6 domains) or skewed (the first '
                             f'domain at {SKEWED_FIRST}); use a fresh --out per start')
    parser.add_argument('--arms', default=DEFAULT_ARMS, help=f'arms to run, of {ARM_LABELS} (default {DEFAULT_ARMS})')
    parser.add_argument('--seeds', default='17,18', help='seeds of every arm (default 17,18)')
    parser.add_argument('--keep-checkpoints', action='store_true',
                        help='keep each finished run\'s Composer checkpoint (deleted by default: ~1 GB a run)')
    parser.add_argument('--rule', default='bounded', help='dynamic-loading rule of every dynamic arm (default bounded; '
                        'doremi, the paper\'s, runs in the folders without a suffix)')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    cfg = QualityConfig(out=args.out, data=args.data, heldout=args.heldout, source=args.source,
                        prune_steps=args.prune_steps, continue_steps=args.continue_steps, calib_rows=args.calib_rows,
                        heldout_rows=args.heldout_rows, scratch_lr=args.scratch_lr, kd_alpha=args.kd_alpha,
                        rule=args.rule, corpus=args.corpus, start=args.start, arms=args.arms.split(','),
                        seeds=[int(x) for x in args.seeds.split(',')], keep_checkpoints=args.keep_checkpoints)
    start = time.monotonic()
    result = run_comparison(cfg)
    path = write_outputs(result, cfg.out.resolve())
    log.info('Wrote %s (%.0f s in all)', path, time.monotonic() - start)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
