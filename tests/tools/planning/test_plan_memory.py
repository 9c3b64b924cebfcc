"""`shear plan`: the memory formula, the advice, the CLI, and the estimate against measured peak RSS."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from composer_plugins.cli.main import main
from composer_plugins.models.source_shape import KNOWN_SHAPES, resolve_source_shape
from composer_plugins.pruning.config import MASK_CALLBACKS
from composer_plugins.pruning.shapes import ModelShape, count_layer_params, count_params
from composer_plugins.tools.planning.advice import knob_options, recommend
from composer_plugins.tools.planning.measure import (
    compare,
    continue_case,
    distill_case,
    prune_case,
    write_corpus,
    write_teacher,
)
from composer_plugins.tools.planning.memory import (
    GIB,
    FsdpInputs,
    MaskInputs,
    MemoryInputs,
    TeacherInputs,
    estimate_memory,
    layer_activation_bytes_per_token,
)
from composer_plugins.tools.planning.run_inputs import plan_run
from conftest import PRUNE_TINY_YAML, REPO_ROOT, TINY_YAML

PRESET_1_3B = REPO_ROOT / 'yamls' / 'presets' / 'llama2_7b_to_1.3b.yaml'
LLAMA2_7B = ModelShape(num_layers=32, hidden_size=4096, num_attention_heads=32, num_key_value_heads=32,
                       head_dim=128, intermediate_size=11008, vocab_size=32000)
LLAMA2_7B_PARAMS = 6_738_415_616  # DESIGN.md: 6,738.4M


def _inputs(**changes) -> MemoryInputs:
    base = dict(shape=LLAMA2_7B, global_batch_size=32, microbatch_size=4, seq_len=4096, gpus=8,
                precision='amp_bf16', fsdp=FsdpInputs(mixed_precision='PURE'))
    base.update(changes)
    return MemoryInputs(**base)


# ---------------------------------------------------------------- hand-computed cases
def test_llama2_7b_weights_gradients_optimizer_on_8_gpus():
    assert count_params(LLAMA2_7B) == LLAMA2_7B_PARAMS
    b = estimate_memory(_inputs())
    assert b.parameters == 4 * LLAMA2_7B_PARAMS // 8 == 3_369_207_808  # fp32 master, 1/8 each
    assert b.gradients == 3_369_207_808
    assert b.optimizer == 6_738_415_616  # exp_avg + exp_avg_sq
    assert b.masks == 0


def test_ddp_replicates_everything_and_adds_gradient_buckets():
    b = estimate_memory(_inputs(fsdp=None))
    assert b.parameters == 4 * LLAMA2_7B_PARAMS
    assert b.gradients == 2 * 4 * LLAMA2_7B_PARAMS  # grads + DDP bucket copy
    assert b.optimizer == 8 * LLAMA2_7B_PARAMS
    linear = 32 * (count_layer_params(LLAMA2_7B) - 2 * 4096) + 32000 * 4096
    assert b.working_copy == 2 * linear  # autocast's bf16 weight cache


def test_full_shard_working_copy_is_root_plus_two_layers_plus_one_gradient():
    layer = 4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096
    root = 2 * 32000 * 4096 + 4096  # untied embeddings + LM head + final norm
    linear = 32 * (layer - 2 * 4096) + 32000 * 4096
    assert count_layer_params(LLAMA2_7B) == layer
    pure = estimate_memory(_inputs())
    assert pure.working_copy == 2 * (root + 2 * layer) + 2 * layer == 1_738_596_352
    default = estimate_memory(_inputs(fsdp=FsdpInputs(mixed_precision='DEFAULT')))
    assert default.working_copy == 2 * (root + 2 * layer) + 4 * layer  # fp32 reduce dtype
    full = estimate_memory(_inputs(fsdp=FsdpInputs(mixed_precision='FULL')))
    assert full.working_copy == 4 * (root + 3 * layer) + 2 * linear  # fp32 gathers + autocast's bf16 copies
    custom = estimate_memory(_inputs(fsdp=FsdpInputs(mixed_precision='CUSTOM', param_dtype='bf16')))
    assert custom.working_copy == 2 * (root + 2 * layer) + 4 * layer
    zero2 = estimate_memory(_inputs(fsdp=FsdpInputs(mixed_precision='PURE', reshard_after_forward=False)))
    assert zero2.working_copy == 2 * LLAMA2_7B_PARAMS + 2 * layer  # every unit stays gathered


def test_checkpointing_with_autocast_casts_peaks_at_the_end_of_the_forward():
    full_ac = _inputs(fsdp=FsdpInputs(mixed_precision='FULL', activation_checkpointing=True))
    b = estimate_memory(full_ac)
    assert b.phase == 'forward end'  # autocast's cache holds a bf16 copy of every Linear weight
    tokens = 4 * 4096
    assert b.logits == tokens * 32000 * 12
    pure_ac = estimate_memory(_inputs(fsdp=FsdpInputs(mixed_precision='PURE', activation_checkpointing=True)))
    assert pure_ac.phase == 'backward start' and pure_ac.logits == tokens * 32000 * 14
    assert b.total > pure_ac.total


def test_tokens_per_step_and_gradient_accumulation():
    b = estimate_memory(_inputs(microbatch_size=2))
    assert b.tokens_per_step == 32 * 4096
    assert (b.device_batch_size, b.microbatch_size, b.microbatches) == (4, 2, 2)
    assert b.tokens_per_microbatch == 2 * 4096
    capped = estimate_memory(_inputs(microbatch_size=64))  # never more than the per-GPU batch
    assert (capped.microbatch_size, capped.microbatches) == (4, 1)


def test_logits_term_is_fp32_loss_copies_plus_logits():
    b = estimate_memory(_inputs(microbatch_size=1))
    assert b.logits == 4096 * 32000 * (2 + 12)
    fp32 = estimate_memory(_inputs(microbatch_size=1, precision='fp32', fsdp=FsdpInputs(mixed_precision='FULL')))
    assert fp32.working_copy == estimate_memory(_inputs(precision='fp32')).working_copy  # no casts in fp32
    assert fp32.logits == 4096 * 32000 * 16


def test_activation_checkpointing_lowers_the_activation_term():
    off = estimate_memory(_inputs())
    on = estimate_memory(_inputs(fsdp=FsdpInputs(mixed_precision='PURE', activation_checkpointing=True)))
    tokens = 4 * 4096
    per_layer = layer_activation_bytes_per_token(_inputs())
    model_level = (4 + 2 * 2) * 4096
    assert off.activations == tokens * (32 * per_layer + model_level)
    kept = 2 * 4096  # each layer's input, bf16 (training runs with use_cache=False: no K/V cache)
    assert on.activations == tokens * (32 * kept + per_layer + model_level)
    assert on.activations < off.activations / 3
    assert on.total < off.total
    assert (on.parameters, on.optimizer, on.logits) == (off.parameters, off.optimizer, off.logits)


def test_more_gpus_shard_static_terms_but_not_activations():
    eight = estimate_memory(_inputs(global_batch_size=64))
    sixteen = estimate_memory(_inputs(global_batch_size=64, gpus=16))
    assert sixteen.optimizer * 2 == eight.optimizer
    assert sixteen.activations == eight.activations  # the same microbatch of 4
    assert (eight.microbatches, sixteen.microbatches) == (2, 1)
    capped = estimate_memory(_inputs(gpus=16))  # 32 samples on 16 GPUs: microbatch 2, not 4
    assert capped.microbatch_size == 2 and capped.activations * 2 == eight.activations


def test_masks_add_parameters_state_and_activations():
    masks = MaskInputs.from_mask_shapes({'layer': (32,), 'kv_group': (32, 32), 'intermediate': (32, 11008),
                                         'hidden': (4096,)})
    assert masks.log_alphas == 32 + 32 * 32 + 32 * 11008 + 4096
    assert masks.multipliers == 8
    plain = estimate_memory(_inputs())
    pruned = estimate_memory(_inputs(masks=masks))
    assert 0 < pruned.masks < 0.001 * plain.total  # small, but counted
    extra_per_layer = 2 * (32 * 128 + 11008 + 2 * 4096)  # unmasked o_proj / down_proj inputs, two outputs
    assert pruned.activations - plain.activations == 4 * 4096 * (32 * extra_per_layer + 2 * 4096)


def test_teacher_adds_its_sharded_weights_gathered_root_and_kd_tensors():
    plain = estimate_memory(_inputs())
    taught = estimate_memory(_inputs(teacher=TeacherInputs(LLAMA2_7B, weight_bytes=2)))
    root = 2 * 32000 * 4096 + 4096  # embeddings + untied LM head + final norm
    tokens = 4 * 4096
    assert taught.teacher == -(-2 * LLAMA2_7B_PARAMS // 8) + 2 * root + tokens * 32000 * 12
    assert taught.total - plain.total == taught.teacher
    assert plain.teacher == 0


def test_plan_reads_the_teacher_of_a_distillation_block(tmp_path):
    teacher = tmp_path / 'teacher'
    write_teacher(teacher, 2)
    planned = plan_run(str(TINY_YAML), [f'distillation={{teacher: {teacher}}}', 'variables.data_dir=/nowhere'],
                       device='cpu')
    assert planned.inputs.teacher.shape.num_layers == 2 and planned.inputs.teacher.weight_bytes == 4
    source = plan_run(str(PRUNE_TINY_YAML), ['distillation={teacher: source}', 'variables.data_dir=/nowhere'],
                      device='cpu')
    assert source.inputs.teacher.shape == source.inputs.shape  # the model being pruned
    preset = plan_run(str(PRESET_1_3B), ['distillation={teacher: source}'], gpus=8)  # its commented block
    assert preset.inputs.teacher == TeacherInputs(LLAMA2_7B, weight_bytes=2)  # bf16 under amp_bf16


# ---------------------------------------------------------------- the activation formula vs autograd
def _saved_bytes(model: torch.nn.Module, batch: dict) -> int:
    """Bytes of distinct non-parameter storages autograd saves in one training forward (which keeps no K/V cache)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            storages[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(batch)
    assert out.past_key_values is None
    return sum(storages.values())


@pytest.mark.parametrize('pruning', [False, True], ids=['plain', 'pruning'])
def test_activation_formula_matches_what_autograd_saves(pruning):
    from composer_plugins.models.causal_lm import ShearCausalLM

    overrides = dict(hidden_size=96, intermediate_size=160, num_hidden_layers=3, num_attention_heads=6,
                     num_key_value_heads=2, vocab_size=320)
    spec = None
    if pruning:
        spec = {'target': dict(num_layers=2, num_attention_heads=3, num_key_value_heads=1, hidden_size=64,
                               intermediate_size=96),
                'mask_types': ['layer', 'kv_group', 'head', 'intermediate', 'hidden']}
    torch.manual_seed(0)
    model = ShearCausalLM('tiny-llama-gqa', config_overrides=overrides, pruning=spec).train()
    model.armed_by.update(MASK_CALLBACKS)  # a forward by hand: no Trainer, no mask callbacks
    ids = torch.randint(0, 256, (2, 64))
    saved = _saved_bytes(model, {'input_ids': ids, 'attention_mask': torch.ones_like(ids), 'labels': ids})

    shape, _ = resolve_source_shape('tiny-llama-gqa', overrides)
    masks = None
    if pruning:
        masks = MaskInputs.from_mask_shapes({n: tuple(g.log_alpha.shape)
                                             for n, g in model.pruner.l0_masks.gates.items()})
    inputs = MemoryInputs(shape=shape, masks=masks, global_batch_size=2, microbatch_size=2, seq_len=64,
                          device='cpu')
    b = estimate_memory(inputs)
    log_softmax = 2 * 64 * 320 * 4  # saved by the cross entropy: part of the logits term
    mask_tensors = b.masks - 16 * (masks.log_alphas + masks.multipliers) if masks else 0
    measured = saved - log_softmax
    # the formula leaves out per-token scalars (RMSNorm variances, labels) and, for the masks, counts an
    # upper bound of the sampling tensors: within 2 % of what autograd holds
    assert measured == pytest.approx(b.activations + mask_tensors, rel=0.02)


# ---------------------------------------------------------------- advice
def test_activation_bound_run_is_told_the_smallest_microbatch_that_fits():
    inputs = _inputs(fsdp=FsdpInputs(mixed_precision='PURE', activation_checkpointing=True))
    estimate = estimate_memory(inputs)
    budget = (estimate.total + estimate.static) // 2  # the static part fits, the activations do not
    options = knob_options(inputs, budget)
    rec = recommend(inputs, budget, options)
    assert rec is not None and rec.knob == 'microbatch' and rec.fits
    size = rec.inputs.microbatch_size
    assert rec.overrides == (f'device_train_microbatch_size={size}',)
    assert rec.breakdown.total <= budget
    assert estimate_memory(inputs.replace(microbatch_size=size * 2)).total > budget  # minimal change
    assert [o.knob for o in options] == ['microbatch', 'gpus', 'seq_len']  # checkpointing is already on


def test_weight_bound_run_is_told_to_use_more_gpus():
    inputs = _inputs(gpus=1, microbatch_size=1, fsdp=None)
    budget = 80 * GIB
    assert estimate_memory(inputs).static > budget  # 16 bytes per parameter: ~100 GiB
    rec = recommend(inputs, budget, knob_options(inputs, budget))
    assert rec.knob == 'gpus' and rec.fits
    gpus = rec.inputs.gpus
    assert rec.inputs.fsdp is not None and rec.inputs.shard_count == gpus  # DDP cannot shard: FSDP2 is switched on
    assert rec.overrides == (f'--gpus {gpus}', 'fsdp_config.reshard_after_forward=true')
    assert estimate_memory(rec.inputs.replace(gpus=gpus // 2)).total > budget


def test_checkpointing_comes_before_more_gpus_when_microbatch_1_is_not_enough():
    inputs = _inputs(microbatch_size=1, seq_len=4096)
    off = estimate_memory(inputs).total
    on = estimate_memory(inputs.replace(fsdp=FsdpInputs(mixed_precision='PURE', activation_checkpointing=True)))
    budget = (off + on.total) // 2
    rec = recommend(inputs, budget, knob_options(inputs, budget))
    assert rec.knob == 'activation_checkpointing'
    assert rec.overrides == ('fsdp_config.activation_checkpointing=true',)


# ---------------------------------------------------------------- the CLI
def _plan_json(capsys, *argv: str) -> dict:
    assert main(['--log-level', 'ERROR', 'plan', *argv, '--json']) == 0
    return json.loads(capsys.readouterr().out)


def test_preset_plans_without_data_or_weights(capsys):
    plan = _plan_json(capsys, str(PRESET_1_3B), '--gpus', '8', '--gpu-mem', '80')
    assert plan['source_shape'] == 'llama2-7b'  # meta-llama/Llama-2-7b-hf from the known-shapes table
    assert plan['parameters'] == LLAMA2_7B_PARAMS
    assert plan['tokens_per_step'] == 32 * 4096
    assert plan['microbatches'] == 1 and plan['device_batch_size'] == 4
    assert plan['fits'] is True and plan['recommendation'] is None
    assert sum(plan['terms_bytes'].values()) == plan['total_bytes']
    assert any('data/redpajama_for_prune' in p for p in plan['missing_paths'])
    assert plan['inputs']['fsdp']['activation_checkpointing'] is True


def test_cli_reports_the_knob_for_a_run_that_does_not_fit(capsys):
    no_ac = ('fsdp_config.activation_checkpointing=false',)
    plan = _plan_json(capsys, str(PRESET_1_3B), *no_ac, '--gpus', '8', '--gpu-mem', '40')
    assert plan['fits'] is False
    options = {o['knob']: o for o in plan['options']}
    assert not options['microbatch']['fits']  # even 1 x 4096 tokens keeps too many activations
    rec = plan['recommendation']
    assert rec['knob'] == 'activation_checkpointing' and rec['fits'] and rec['total_gib'] <= 40
    assert rec['overrides'][0] == 'fsdp_config.activation_checkpointing=true'
    again = _plan_json(capsys, str(PRESET_1_3B), *no_ac, *rec['overrides'], '--gpus', '8', '--gpu-mem', '40')
    assert again['fits'] is True and again['total_gib'] == rec['total_gib']


def test_text_table_lists_every_term_and_the_verdict(capsys):
    assert main(['--log-level', 'ERROR', 'plan', str(PRESET_1_3B), '--gpus', '2', '--gpu-mem', '40']) == 0
    out = capsys.readouterr().out
    for label in ('parameters', 'gradients', 'optimizer state', 'masks', 'gathered FSDP units', 'activations',
                  'logits', 'CUDA context', 'total'):
        assert label in out
    assert 'Does not fit in 40.0 GiB' in out and 'Turn first:' in out


def test_source_shape_flag_and_config_json(tmp_path, capsys):
    from transformers import LlamaConfig
    LlamaConfig(**{k: v for k, v in KNOWN_SHAPES['smollm2-135m'].items() if k != 'model_type'}).save_pretrained(
        tmp_path)
    by_name = _plan_json(capsys, str(TINY_YAML), f'variables.data_dir={tmp_path}', '--source-shape', 'smollm2-135m')
    by_file = _plan_json(capsys, str(TINY_YAML), f'variables.data_dir={tmp_path}',
                         '--source-shape', str(tmp_path / 'config.json'))
    by_source = _plan_json(capsys, str(TINY_YAML), f'variables.data_dir={tmp_path}', f'model.source={tmp_path}')
    assert by_name['parameters'] == by_file['parameters'] == by_source['parameters'] == 134_515_008
    assert by_name['terms_bytes'] == by_source['terms_bytes']


def test_tiny_source_and_data_that_exists_are_checked(corpus_dir, capsys):
    plan = _plan_json(capsys, str(PRUNE_TINY_YAML), f'variables.data_dir={corpus_dir}', '--device', 'cpu')
    assert plan['missing_paths'] == []
    assert plan['inputs']['masks']['multipliers'] == 10  # 5 mask types
    assert plan['terms_bytes']['overhead'] >= GIB


def test_missing_data_folders_are_reported_and_existing_ones_used(tmp_path, corpus_dir):
    nowhere = tmp_path / 'nowhere'
    planned = plan_run(str(TINY_YAML), [f'variables.data_dir={nowhere}'])
    assert planned.missing_paths == (f'train_loader.dataset.local: {nowhere}', f'eval_loader.dataset.local: {nowhere}')
    assert planned.seq_len_key == 'variables.max_seq_len'
    present = plan_run(str(TINY_YAML), [f'variables.data_dir={corpus_dir}'])
    assert present.missing_paths == ()
    assert present.config.train_loader.dataset.local == str(corpus_dir)  # validated as train.py would
    assert present.inputs == planned.inputs


@pytest.mark.parametrize(('name', 'params'), [
    ('llama2-7b', LLAMA2_7B_PARAMS), ('llama3.1-8b', 8_030_261_248), ('smollm2-135m', 134_515_008),
])
def test_known_shapes_have_the_published_sizes(name, params):
    shape, label = resolve_source_shape('unused', source_shape=name)
    assert label == name and count_params(shape) == params


@pytest.mark.parametrize(('argv', 'message'), [
    ([str(TINY_YAML), 'optimizer.lrr=1e-3'], "optimizer.lrr: not an argument of decoupled_adamw. Did you mean 'lr'?"),
    ([str(TINY_YAML), '--gpus', '0'], '--gpus: got 0'),
    ([str(TINY_YAML), '--source-shape', 'llama9-70b'], "--source-shape 'llama9-70b': not a known shape"),
    ([str(TINY_YAML), 'model.source=someorg/unknown-model'], 'give the shape with --source-shape'),
    ([str(TINY_YAML), 'global_train_batch_size=6', '--gpus', '4'], 'not divisible by --gpus (4)'),
    ([str(PRESET_1_3B), 'model.pruning.target.num_layers=40'], 'num_layers (40) exceeds the source'),
    ([str(TINY_YAML), '--gpu-mem', '-1'], '--gpu-mem: got -1.0'),
    ([str(TINY_YAML), '--device', 'cpu', '--gpus', '2'], '--device cpu plans one training process'),
])
def test_bad_input_gives_one_error_and_exit_code_2(argv, message, caplog, capsys):
    with caplog.at_level(logging.ERROR):
        assert main(['plan', *argv]) == 2
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert message in errors[0].getMessage()
    assert capsys.readouterr().out == ''


def test_plan_ignores_checkpoints_in_the_runs_save_folder(tmp_path, capsys):
    """Planning writes nothing: a save folder that already holds checkpoints (which training refuses) is fine."""
    (tmp_path / 'checkpoints').mkdir()
    (tmp_path / 'checkpoints' / 'ep0-ba10-rank0.pt').write_bytes(b'')
    assert main(['plan', str(TINY_YAML), f'variables.run_dir={tmp_path}']) == 0
    assert 'peak' in capsys.readouterr().out.lower()


# ---------------------------------------------------------------- estimate vs measured peak RSS (CPU)
@pytest.fixture(scope='module')
def rss_workdir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp('memory-plan')
    return work, write_corpus(work / 'data')


def _check_rss(case, layers: int, workdir: tuple[Path, Path]) -> None:
    work, data = workdir
    result = compare(case, layers, work, data)
    assert result.measurement.peak_rss > 2 * GIB  # the model, not the process baseline, dominates
    assert result.relative_error <= 0.25, (
        f'{case.name}: estimate {result.estimate / GIB:.2f} GiB, measured {result.measurement.peak_rss / GIB:.2f} GiB')


def test_estimate_within_25_percent_of_measured_rss_small_pruning_run(rss_workdir):
    _check_rss(prune_case(4), 4, rss_workdir)


@pytest.mark.slow
def test_estimate_within_25_percent_of_measured_rss_distillation_run(rss_workdir):
    """A 4-layer student distilled from a 10-layer teacher (measured: estimate 2.73 GiB, peak 2.63 GiB)."""
    teacher = write_teacher(rss_workdir[0] / 'teacher-10l', 10)
    _check_rss(distill_case(4, teacher), 4, rss_workdir)


@pytest.mark.slow
@pytest.mark.parametrize('make_case', [continue_case, prune_case], ids=['continue', 'prune'])
def test_estimate_within_25_percent_of_measured_rss(make_case, rss_workdir):
    _check_rss(make_case(10), 10, rss_workdir)
