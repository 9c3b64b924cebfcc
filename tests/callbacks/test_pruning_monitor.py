"""A real pruning run of a tiny GQA Llama: metrics, ramp, gradient ascent, mask snapshots, errors."""
from __future__ import annotations

import pytest
import torch

from composer_plugins.config.load import load_run_config
from composer_plugins.errors import ConfigError, ShearError
from conftest import REPO_ROOT

PRUNE_YAML = str(REPO_ROOT / 'yamls' / 'prune_tiny.yaml')
MASKS = ('layer', 'kv_group', 'head', 'intermediate', 'hidden')


@pytest.fixture(scope='module')
def pruning_run(corpus_dir, tmp_path_factory):
    from composer.loggers import InMemoryLogger

    from composer_plugins.train_entry import run

    run_dir = tmp_path_factory.mktemp('prune')
    cfg = load_run_config(PRUNE_YAML, [
        f'variables.data_dir={corpus_dir}', f'variables.run_dir={run_dir}', 'max_duration=24ba',
        'eval_interval=12ba', 'save_folder=null', 'loggers={inmemory: {}}', 'model.pruning.lagrangian_warmup=16ba',
    ])
    trainer = run(cfg)
    logger = next(d for d in trainer.logger.destinations if isinstance(d, InMemoryLogger))
    return trainer, logger.data, run_dir


def test_metric_keys_and_target_ramp(pruning_run):
    _, data, _ = pruning_run
    for mask in MASKS:
        for key in ('expected_sparsity', 'target_sparsity', 'lambda1', 'lambda2'):
            assert len(data[f'l0/{key}/{mask}']) == 24, f'l0/{key}/{mask}'
    assert len(data['l0/expected_params']) == 24
    assert len(data['loss/train/lagrangian']) == 24
    # layer target: 1 - 1/2 = 0.5 reached linearly over 16 batches; batch b is step b-1 of the ramp
    ramp = [value for _, value in data['l0/target_sparsity/layer']]
    assert ramp[0] == pytest.approx(0.0)
    assert ramp[8] == pytest.approx(0.5 * 8 / 16)
    assert ramp[-1] == pytest.approx(0.5)
    # hidden target 1 - 48/64
    assert data['l0/target_sparsity/hidden'][-1][1] == pytest.approx(0.25)


def test_multipliers_ascend_while_sparsity_is_below_target(pruning_run):
    _, data, _ = pruning_run
    # while s < t, gradient ascent on lambda1 * (s - t) lowers lambda1
    window = range(6, 16)
    below = [data['l0/expected_sparsity/intermediate'][i][1] < data['l0/target_sparsity/intermediate'][i][1]
             for i in window]
    assert all(below)
    assert data['l0/lambda1/intermediate'][15][1] < data['l0/lambda1/intermediate'][6][1]
    assert data['l0/lambda2/intermediate'][-1][1] > 0  # (s - t)^2 >= 0 only ever raises lambda2


def test_optimizer_has_three_groups_and_multipliers_are_one_element(pruning_run):
    trainer, _, _ = pruning_run
    groups = trainer.state.optimizers[0].param_groups
    assert len(groups) == 3
    model = trainer.state.model
    lambdas = {id(p) for p in model.pruner.lagrangian.parameters()}
    log_alphas = {id(p) for p in model.pruner.l0_masks.parameters()}
    by_ids = [{id(p) for p in g['params']} for g in groups]
    ascent = [g for g, ids in zip(groups, by_ids) if ids == lambdas]
    gates = [g for g, ids in zip(groups, by_ids) if ids == log_alphas]
    assert len(ascent) == 1 and ascent[0]['maximize'] is True and ascent[0]['lr'] == pytest.approx(0.1)
    assert len(gates) == 1 and gates[0]['maximize'] is False and gates[0]['lr'] == pytest.approx(0.1)
    assert all(p.shape == (1,) for p in model.pruner.lagrangian.parameters())


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
    (['optimizer.name=decoupled_adamw'], "model.pruning needs 'adamw'"),
])
def test_bad_pruning_config_is_one_clear_error(corpus_dir, overrides, message):
    from composer_plugins.models.causal_lm import ShearCausalLM
    from composer_plugins.config.typed import to_dict

    with pytest.raises((ConfigError, ShearError)) as info:
        cfg = load_run_config(PRUNE_YAML, [f'variables.data_dir={corpus_dir}', *overrides])
        ShearCausalLM(cfg.model.source, config_overrides=cfg.model.config_overrides,
                      pruning=to_dict(cfg.model.pruning))
    assert message in str(info.value)


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
