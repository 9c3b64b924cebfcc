"""Real pruning runs of a tiny GQA Llama: the mask_learning and lagrangian callbacks, pruning_monitor's
metrics and snapshots, importance init, convergence, errors."""
from __future__ import annotations

import math

import pytest
import torch

from composer_plugins.config.load import load_run_config
from composer_plugins.errors import ConfigError, ShearError
from conftest import REPO_ROOT

PRUNE_YAML = str(REPO_ROOT / 'yamls' / 'prune_tiny.yaml')
MASKS = ('layer', 'kv_group', 'head', 'intermediate', 'hidden')


@pytest.fixture(scope='module')
def pruning_run(corpus_dir, tmp_path_factory):
    """A dense-init run (the paper's start) with a target ramp, and a decaying schedule for the weights."""
    from composer.loggers import InMemoryLogger

    from composer_plugins.train_entry import run

    run_dir = tmp_path_factory.mktemp('prune')
    cfg = load_run_config(PRUNE_YAML, [
        f'variables.data_dir={corpus_dir}', f'variables.run_dir={run_dir}', 'max_duration=24ba',
        'eval_interval=12ba', 'save_folder=null', 'loggers={inmemory: {}}',
        'callbacks.mask_learning.init=dense', 'callbacks.mask_learning.settle=0ba',
        'callbacks.lagrangian.target_warmup=16ba',
        'scheduler={name: linear_decay_with_warmup, t_warmup: 0ba, alpha_f: 0.0}',
    ])
    trainer = run(cfg)
    logger = next(d for d in trainer.logger.destinations if isinstance(d, InMemoryLogger))
    return trainer, logger.data, run_dir


def _callback(trainer, cls_name: str):
    return next(c for c in trainer.state.callbacks if type(c).__name__ == cls_name)


def test_metric_keys_and_target_ramp(pruning_run):
    _, data, _ = pruning_run
    for mask in MASKS:
        for key in ('expected_sparsity', 'target_sparsity', 'lambda1', 'lambda2'):
            assert len(data[f'l0/{key}/{mask}']) == 24, f'l0/{key}/{mask}'
    assert len(data['l0/expected_params']) == 24
    assert len(data['loss/train/lagrangian']) == 24
    # the layer target ramps linearly over 16 batches from the dense start's expected sparsity
    # (1 - kept_fraction(log(0.99 / 0.01)): the keep probability over the clamp's range) to 1 - 1/2;
    # batch b is step b-1 of the ramp
    def keep_prob(log_alpha: float) -> float:
        return 1.0 / (1.0 + math.exp(-(log_alpha - (2 / 3) * math.log(0.1 / 1.1))))

    low, high = keep_prob(-math.log(100.0)), keep_prob(math.log(1000.0))
    start = 1.0 - (keep_prob(math.log(99.0)) - low) / (high - low)
    ramp = [value for _, value in data['l0/target_sparsity/layer']]
    assert ramp[0] == pytest.approx(start, abs=1e-6)
    assert ramp[8] == pytest.approx(start + (0.5 - start) * 8 / 16, abs=1e-6)
    assert ramp[-1] == pytest.approx(0.5)
    assert data['l0/target_sparsity/hidden'][-1][1] == pytest.approx(0.25)  # 1 - 48/64


def test_multipliers_ascend_while_sparsity_is_below_target(pruning_run):
    _, data, _ = pruning_run
    # while s < t, gradient ascent on lambda1 * (s - t) lowers lambda1 (with the mask rate 0.5 the
    # sparsity catches the ramp at batch 15 and overshoots it before the multipliers turn)
    window = range(6, 14)
    below = [data['l0/expected_sparsity/intermediate'][i][1] < data['l0/target_sparsity/intermediate'][i][1]
             for i in window]
    assert all(below)
    assert data['l0/lambda1/intermediate'][13][1] < data['l0/lambda1/intermediate'][6][1]
    assert data['l0/lambda2/intermediate'][-1][1] > 0  # (s - t)^2 >= 0 only ever raises lambda2


def test_callbacks_own_masks_and_multipliers_not_the_weights_optimizer(pruning_run):
    trainer, data, _ = pruning_run
    model = trainer.state.model
    pruner_ids = {id(p) for p in model.pruner.parameters()}
    weights = trainer.state.optimizers[0]
    assert len(weights.param_groups) == 1
    assert not pruner_ids & {id(p) for g in weights.param_groups for p in g['params']}
    assert weights.param_groups[0]['lr'] < 3.0e-3 / 10  # the weights' schedule decayed (to 1/24 of 3e-3) ...
    masks = _callback(trainer, 'MaskLearning')._optimizer
    assert {id(p) for g in masks.param_groups for p in g['params']} == \
        {id(p) for p in model.pruner.l0_masks.parameters()}
    assert [v for _, v in data['l0/mask_lr']] == [pytest.approx(0.5)] * 24  # ... and scaled no mask rate
    dual = _callback(trainer, 'LagrangianAscent')._optimizer
    assert {id(p) for g in dual.param_groups for p in g['params']} == \
        {id(p) for p in model.pruner.lagrangian.parameters()}
    assert all(g['maximize'] is True and g['lr'] == pytest.approx(0.1) for g in dual.param_groups)
    assert all(p.shape == (1,) for p in model.pruner.lagrangian.parameters())


def test_weights_can_use_another_optimizer(corpus_dir, tmp_path):
    """decoupled_lionw for the weights; the masks and multipliers still learn in their callbacks."""
    from composer_plugins.train_entry import run

    cfg = load_run_config(PRUNE_YAML, [
        f'variables.data_dir={corpus_dir}', f'variables.run_dir={tmp_path}', 'max_duration=6ba',
        'eval_interval=6ba', 'save_folder=null', 'loggers={}', 'callbacks.mask_learning.settle=0ba',
        'optimizer.name=decoupled_lionw', 'optimizer.lr=1.0e-4', 'optimizer.betas=[0.9,0.99]',
        'optimizer.eps=null',  # Lion has no eps
    ])
    trainer = run(cfg)
    model = trainer.state.model
    assert type(trainer.state.optimizers[0]).__name__ == 'DecoupledLionW'
    init = _callback(trainer, 'MaskLearning')
    assert init.importance is not None
    lambdas = torch.cat([p.detach().reshape(-1) for p in model.pruner.lagrangian.parameters()])
    assert bool((lambdas != 0).any())  # the multipliers moved
    la = model.pruner.l0_masks.gates['intermediate'].log_alpha.detach()
    assert len(torch.unique(la)) > 2  # two levels at init; the masks' Adam moved them apart


def test_importance_init_masks_equal_prune_oneshot(corpus_dir, tmp_path):
    """With init: importance the deterministic masks at the start are shear prune-oneshot's masks."""
    import json

    from composer_plugins.cli.main import main as shear_main
    from composer_plugins.models.loading import load_causal_lm
    from composer_plugins.train_entry import run

    source = tmp_path / 'source'
    load_causal_lm('tiny-llama-gqa', config_overrides={'num_hidden_layers': 4, 'num_attention_heads': 8}
                   ).save_pretrained(source)
    assert shear_main(['prune-oneshot', '--model', str(source), '--data', str(corpus_dir), '--target', PRUNE_YAML,
                       '--calib-rows', '32', '--out', str(tmp_path / 'oneshot')]) == 0
    record = json.loads((tmp_path / 'oneshot' / 'pruning.json').read_text())

    run_dir = tmp_path / 'run'
    run(load_run_config(PRUNE_YAML, [
        f'variables.data_dir={corpus_dir}', f'variables.run_dir={run_dir}', f'model.source={source}',
        'max_duration=1ba', 'eval_interval=1ba', 'save_folder=null', 'loggers={}',
    ]))
    masks = torch.load(run_dir / 'masks' / 'step1.pt')  # after one step of lr 0.05 on a margin of 10
    layers = masks['layer'].nonzero().reshape(-1).tolist()
    assert layers == record['kept_layers']
    assert masks['hidden'].nonzero().reshape(-1).tolist() == record['kept_hidden']
    for kept in record['layers']:
        index = kept['source_layer']
        assert masks['kv_group'][index].nonzero().reshape(-1).tolist() == kept['kv_groups']
        heads = (masks['kv_group'][index][:, None] * masks['head'][index]).reshape(-1)
        assert heads.nonzero().reshape(-1).tolist() == kept['query_heads']
        assert masks['intermediate'][index].nonzero().reshape(-1).tolist() == kept['intermediate']


def test_mask_snapshots_keep_exact_target_counts(pruning_run):
    _, _, run_dir = pruning_run
    for step in (12, 24):
        masks = torch.load(run_dir / 'masks' / f'step{step}.pt')
        assert int((masks['layer'] > 0).sum()) == 2
        assert ((masks['head'] > 0).sum(dim=-1) == 2).all()
        assert ((masks['kv_group'] > 0).sum(dim=1) == 1).all()
        assert ((masks['intermediate'] > 0).sum(dim=1) == 96).all()
        assert int((masks['hidden'] > 0).sum()) == 48
        assert set(masks['hidden'].unique().tolist()) <= {0.0, 1.0}
        summary = (run_dir / 'masks' / f'step{step}.txt').read_text()
        assert 'hidden channels kept: 48 / 64' in summary
        assert summary.count('pruned') == 2


@pytest.mark.parametrize(('overrides', 'message'), [
    (['model.pruning.target.hidden_size=128'], 'hidden_size'),
    (['model.pruning.target.num_attention_heads=3', 'model.pruning.target.num_key_value_heads=2'], 'divisible'),
    (['model.pruning.target.num_attention_heads=5'], 'q_per_kv (5) exceeds the source q_per_kv (4)'),
    (['model.pruning.mask_types=[layer,expert]'], "model.pruning.mask_types[1]: got 'expert'"),
    (['optimizer.lag_lr=1.0'], 'optimizer.lag_lr: removed; the log-alphas learn in callbacks.mask_learning'),
    (['model.pruning.lagrangian_warmup=10ba'], 'set callbacks.lagrangian.target_warmup instead'),
    (['model.pruning.init_drop_prob=0.1'], 'callbacks.mask_learning.init_drop_prob'),
    (['callbacks.mask_learning.lr=-1.0'], 'callbacks.mask_learning.lr: got -1.0'),
    (['callbacks.lagrangian.lr=0'], 'callbacks.lagrangian.lr: got 0'),
    (['callbacks.lagrangian.rule=newton'], "callbacks.lagrangian.rule: got 'newton'"),
    (['callbacks.mask_learning.calibration=null'], 'callbacks.mask_learning.calibration: required with init'),
    (['callbacks.mask_learning.calibration.data=/no/such/dir'], "calibration.data: '/no/such/dir' is not a dir"),
    (['callbacks.mask_learning.settle=5'], None),
])
def test_bad_pruning_config_is_one_clear_error(corpus_dir, overrides, message):
    from composer_plugins.config.typed import to_dict
    from composer_plugins.models.causal_lm import ShearCausalLM

    if message is None:  # accepted: a plain number of batches
        load_run_config(PRUNE_YAML, [f'variables.data_dir={corpus_dir}', *overrides])
        return
    with pytest.raises((ConfigError, ShearError)) as info:
        cfg = load_run_config(PRUNE_YAML, [f'variables.data_dir={corpus_dir}', *overrides])
        ShearCausalLM(cfg.model.source, config_overrides=cfg.model.config_overrides,
                      pruning=to_dict(cfg.model.pruning))
    assert message in str(info.value)


@pytest.mark.parametrize('callback', ['mask_learning', 'lagrangian'])
def test_pruning_without_its_callbacks_is_named(callback, corpus_dir, tmp_path):
    import yaml

    raw = yaml.safe_load(open(PRUNE_YAML).read())
    del raw['callbacks'][callback]
    path = tmp_path / 'prune.yaml'
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=f'callbacks.{callback}: required with model.pruning'):
        load_run_config(str(path), [f'variables.data_dir={corpus_dir}'])


def test_short_run_reaches_the_exact_target_shape(corpus_dir, tmp_path):
    """yamls/prune_tiny.yaml as shipped cuts every mask type; by its last step every expected
    sparsity is within 0.02 of its target, and the export has exactly the target shape."""
    from composer.loggers import InMemoryLogger
    from transformers import AutoModelForCausalLM

    from composer_plugins.cli.main import main as shear_main
    from composer_plugins.train_entry import run

    cfg = load_run_config(PRUNE_YAML, [
        f'variables.data_dir={corpus_dir}', f'variables.run_dir={tmp_path}', 'loggers={inmemory: {}}',
        'eval_interval=240ba', 'save_interval=240ba', 'console_log_interval=60ba',
    ])
    trainer = run(cfg)
    data = next(d for d in trainer.logger.destinations if isinstance(d, InMemoryLogger)).data
    targets = {m: data[f'l0/target_sparsity/{m}'][-1][1] for m in MASKS}
    assert all(t > 0 for t in targets.values()), targets  # every mask type is cut
    for mask in MASKS:
        expected = data[f'l0/expected_sparsity/{mask}'][-1][1]
        assert abs(expected - targets[mask]) <= 0.02, (mask, expected, targets[mask])

    out = tmp_path / 'exported'
    assert shear_main(['export', str(tmp_path / 'checkpoints' / 'latest-rank0.pt'), '--out', str(out)]) == 0
    config = AutoModelForCausalLM.from_pretrained(out).config
    target = cfg.model.pruning.target
    assert (config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads, config.hidden_size,
            config.intermediate_size) == (target.num_layers, target.num_attention_heads, target.num_key_value_heads,
                                          target.hidden_size, target.intermediate_size)


def test_unsupported_architecture_is_named(tmp_path):
    from transformers import GPT2Config

    from composer_plugins.models.causal_lm import ShearCausalLM

    GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=320).save_pretrained(tmp_path)
    with pytest.raises(ShearError, match="architecture 'gpt2' is not supported"):
        ShearCausalLM(str(tmp_path), pretrained=False)
