"""Tests of the pruned-model export (fold and slice) and of `shear export` on Composer checkpoints."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from composer_plugins.cli import main as cli_main
from composer_plugins.errors import ShearError
from composer_plugins.models.causal_lm import ShearCausalLM
from composer_plugins.models.dead_units import check_no_dead_units, dead_unit_problems
from composer_plugins.models.export import export_pruned_model, pruning_record, save_exported
from composer_plugins.models.tiny import TINY_MODEL_NAMES
from composer_plugins.pruning.config import MASK_CALLBACKS
from composer_plugins.pruning.hard_concrete import KEPT_VALUE_FLOOR
from composer_plugins.pruning.masks import BINARY_DETERMINISTIC
from composer_plugins.pruning.shapes import ModelShape
from data_prep.byte_tokenizer import ByteLevelTokenizer

log = logging.getLogger(__name__)

# Masked and exported models are compared in float64 (the export keeps a float64 source's
# dtype), so the order in which BLAS / the thread count sums the matmuls cannot matter:
# float64 round-off at these sizes is ~1e-13, and without a pruned hidden channel the logits
# agree to EXACT_TOL (measured: exactly 0). With pruned hidden channels a deterministic
# residual remains: HF's *RMSNorm and MaskedRMSNorm (which mirrors it) compute in float32
# even on float64 inputs, and the masked norm sums x**2 over all source channels (pruned ones
# are zeros) while the exported one sums over the kept channels, so the two float32 sums round
# differently: at most 1.3e-7 measured on these models, the same with 1 or 2 threads. A real
# mismatch is far above TOL: one kept head's o_proj block off by a relative 1e-4 moves the
# logits by 8e-6 or more (test_tolerance_catches_a_real_mismatch).
TOL = 1e-6
EXACT_TOL = 1e-9
SEEDS = (0, 1, 2)
COMMON_TARGET = dict(num_layers=1, hidden_size=48, intermediate_size=96)
# GQA sources have 4 query heads in 2 KV groups (q_per_kv 2); one target per seed:
GQA_HEADS = (
    dict(num_attention_heads=2, num_key_value_heads=1),  # cut a whole KV group
    dict(num_attention_heads=2, num_key_value_heads=2),  # cut a query head inside every group
    dict(num_attention_heads=1, num_key_value_heads=1),  # both
)
MHA_HEADS = dict(num_attention_heads=2, num_key_value_heads=2)


def target_for(name: str, seed: int) -> dict[str, int]:
    heads = MHA_HEADS if name == 'tiny-llama' else GQA_HEADS[seed % len(GQA_HEADS)]
    return {**COMMON_TARGET, **heads}


def randomize_log_alphas(model: ShearCausalLM, seed: int, std: float = 2.0) -> None:
    """Random log_alphas, so deterministic masks keep varied units with non-trivial soft values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.pruner.l0_masks.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * std)


def random_batch(seed: int, batch: int = 2, seq: int = 12) -> dict[str, torch.Tensor]:
    ids = torch.randint(0, 256, (batch, seq), generator=torch.Generator().manual_seed(1000 + seed))
    return {'input_ids': ids, 'attention_mask': torch.ones_like(ids), 'labels': ids}


def masked_model(name: str, seed: int, target: dict[str, int], **pruning: Any) -> ShearCausalLM:
    """A float64 masked model (weights and log_alphas) with random log_alphas, in eval mode."""
    torch.manual_seed(seed)
    model = ShearCausalLM(name, pruning={'target': target, **pruning})
    randomize_log_alphas(model, seed)
    return model.double().eval()


def masked_logits(model: ShearCausalLM, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(batch).logits


def plain_logits(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=batch['input_ids'], attention_mask=batch['attention_mask']).logits


def export_masked(model: ShearCausalLM) -> Any:
    """The export of ``model`` under its deterministic masks."""
    masks = model.pruner.l0_masks.deterministic()
    return export_pruned_model(model.model, masks, model.pruner.source, model.pruner.target)


def export_to(model: ShearCausalLM, out: Path, source_name: str) -> dict[str, Any]:
    masks = model.pruner.l0_masks.deterministic()
    source, target = model.pruner.source, model.pruner.target
    exported = export_pruned_model(model.model, masks, source, target)
    record = pruning_record(masks, source, target, source_name)
    save_exported(exported, None, record, out)
    return record


def reload(out: Path) -> Any:
    """The saved export, loaded in float64 (as it was saved)."""
    return AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float64).eval()


def max_diff(exported: Any, expected: torch.Tensor, batch: dict[str, torch.Tensor]) -> float:
    """Largest absolute difference between ``exported``'s logits and ``expected``."""
    return (plain_logits(exported, batch) - expected).abs().max().item()


@pytest.mark.parametrize('seed', SEEDS)
@pytest.mark.parametrize('name', TINY_MODEL_NAMES)
def test_exported_model_equals_masked_model(name: str, seed: int, tmp_path: Path) -> None:
    model = masked_model(name, seed, target_for(name, seed))
    batch = random_batch(seed)
    expected = masked_logits(model, batch)
    export_to(model, tmp_path / 'out', name)

    reloaded = reload(tmp_path / 'out')
    assert type(reloaded) is type(model.model)
    assert reloaded.dtype == expected.dtype == torch.float64
    assert ModelShape.from_hf_config(reloaded.config) == model.pruner.target
    assert reloaded.config.head_dim == model.pruner.source.head_dim
    diff = max_diff(reloaded, expected, batch)
    log.info('%s seed %d: max |logit diff| %.3g (float64)', name, seed, diff)
    assert diff <= TOL, f'{name} seed {seed}: max |logit diff| {diff}'
    for key in ('eos_token_id', 'pad_token_id', 'rope_theta', 'rms_norm_eps', 'max_position_embeddings'):
        assert getattr(reloaded.config, key) == getattr(model.model.config, key)
    if name == 'tiny-llama-gqa':
        assert reloaded.config.tie_word_embeddings
        assert reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()


def test_head_layer_and_mlp_masks(tmp_path: Path) -> None:
    """head_layer + mlp export when both keep the same layers, and fail clearly when they do not."""
    target = target_for('tiny-llama-gqa', 2)
    mask_types = ['head_layer', 'mlp', 'kv_group', 'head', 'intermediate', 'hidden']
    model = masked_model('tiny-llama-gqa', 0, target, mask_types=mask_types)
    gates = model.pruner.l0_masks.gates
    with torch.no_grad():
        gates['head_layer'].log_alpha.copy_(torch.tensor([-1.0, 1.5]))
        gates['mlp'].log_alpha.copy_(torch.tensor([-2.0, 0.5]))
    batch = random_batch(0)
    expected = masked_logits(model, batch)
    record = export_to(model, tmp_path / 'out', 'tiny-llama-gqa')
    assert record['kept_layers'] == [1]
    assert max_diff(reload(tmp_path / 'out'), expected, batch) <= TOL

    with torch.no_grad():
        gates['mlp'].log_alpha.copy_(torch.tensor([2.0, 0.5]))
    masks = model.pruner.l0_masks.deterministic()
    with pytest.raises(ShearError, match='keep different layers'):
        export_pruned_model(model.model, masks, model.pruner.source, model.pruner.target)


@pytest.mark.parametrize('name', ['tiny-llama', 'tiny-llama-gqa', 'tiny-qwen2'])
def test_pruning_record(name: str, tmp_path: Path) -> None:
    seed = 2
    model = masked_model(name, seed, target_for(name, seed))
    export_to(model, tmp_path / 'out', name)
    record = json.loads((tmp_path / 'out' / 'pruning.json').read_text())
    source, target = model.pruner.source, model.pruner.target
    assert record['source_model'] == name
    assert ModelShape(**record['source_shape']) == source
    assert ModelShape(**record['target_shape']) == target

    def check(indices: list[int], count: int, bound: int) -> None:
        assert len(indices) == count
        assert indices == sorted(set(indices))
        assert all(0 <= i < bound for i in indices)

    check(record['kept_layers'], target.num_layers, source.num_layers)
    check(record['kept_hidden'], target.hidden_size, source.hidden_size)
    assert [layer['source_layer'] for layer in record['layers']] == record['kept_layers']
    assert [layer['layer'] for layer in record['layers']] == list(range(target.num_layers))
    for layer in record['layers']:
        check(layer['kv_groups'], target.num_key_value_heads, source.num_key_value_heads)
        check(layer['query_heads'], target.num_attention_heads, source.num_attention_heads)
        check(layer['intermediate'], target.intermediate_size, source.intermediate_size)
        # Query heads belong to kept KV groups, q_per_kv of them in each.
        groups = [h // source.q_per_kv for h in layer['query_heads']]
        assert sorted(set(groups)) == layer['kv_groups']
        assert all(groups.count(g) == target.q_per_kv for g in layer['kv_groups'])
    # The deterministic masks agree with the record.
    masks = model.pruner.l0_masks.deterministic()
    assert (masks['hidden'] > 0).nonzero().flatten().tolist() == record['kept_hidden']


@pytest.mark.parametrize('name', TINY_MODEL_NAMES)
def test_export_without_hidden_pruning_is_exact_in_float64(name: str) -> None:
    """Soft kept values folded into o_proj / down_proj, every slice but the hidden one: float64 round-off only."""
    seed = 1
    model = masked_model(name, seed, {**target_for(name, seed), 'hidden_size': 64})
    batch = random_batch(seed)
    diff = max_diff(export_masked(model), masked_logits(model, batch), batch)
    log.info('%s without hidden pruning: max |logit diff| %.3g (float64)', name, diff)
    assert diff <= EXACT_TOL


@pytest.mark.parametrize('hidden_size', [48, 64])
@pytest.mark.parametrize('name', TINY_MODEL_NAMES)
def test_tolerance_catches_a_real_mismatch(name: str, hidden_size: int) -> None:
    """A relative 1e-4 error in one kept head's folded o_proj block is well above the bound."""
    seed = 0
    model = masked_model(name, seed, {**target_for(name, seed), 'hidden_size': hidden_size})
    bound = TOL if hidden_size < model.pruner.source.hidden_size else EXACT_TOL
    batch = random_batch(seed)
    expected = masked_logits(model, batch)
    exported = export_masked(model)
    assert max_diff(exported, expected, batch) <= bound
    head_dim = model.pruner.source.head_dim
    with torch.no_grad():
        exported.model.layers[0].self_attn.o_proj.weight[:, :head_dim].mul_(1 + 1e-4)
    diff = max_diff(exported, expected, batch)
    log.info('%s hidden %d: one head off by a relative 1e-4 -> max |logit diff| %.3g', name, hidden_size, diff)
    assert diff > 5 * bound


# --------------------------------------------------------------------------- dead units


@pytest.mark.parametrize('mask_name', ['layer', 'kv_group', 'head', 'intermediate', 'hidden'])
def test_kept_unit_with_value_zero_is_rejected(mask_name: str) -> None:
    """A deterministic mask whose row keeps a unit of value 0 would export a dead unit."""
    name = 'tiny-llama-gqa'
    model = masked_model(name, 1, target_for(name, 1))
    masks = model.pruner.l0_masks.deterministic()
    assert mask_name in masks
    kept = masks[mask_name].nonzero()[0]
    masks[mask_name][tuple(kept)] = 0.0
    with pytest.raises(ShearError, match=f"mask '{mask_name}'.*kept units have value 0.*dead units"):
        export_pruned_model(model.model, masks, model.pruner.source, model.pruner.target)


def _zero_query_head(model: Any, head_dim: int) -> None:
    model.model.layers[0].self_attn.o_proj.weight[:, head_dim:2 * head_dim] = 0


def _zero_kv_group(model: Any, head_dim: int) -> None:
    attn = model.model.layers[0].self_attn
    attn.k_proj.weight[:head_dim] = 0
    attn.v_proj.weight[:head_dim] = 0
    if attn.k_proj.bias is not None:
        attn.k_proj.bias[:head_dim] = 0
        attn.v_proj.bias[:head_dim] = 0


def _zero_ffn_down(model: Any, head_dim: int) -> None:
    model.model.layers[0].mlp.down_proj.weight[:, 3] = 0


def _zero_ffn_gate(model: Any, head_dim: int) -> None:
    model.model.layers[0].mlp.gate_proj.weight[5] = 0


def _zero_hidden(model: Any, head_dim: int) -> None:
    model.model.embed_tokens.weight[:, 7] = 0


@pytest.mark.parametrize('name', ['tiny-llama', 'tiny-qwen2'])
@pytest.mark.parametrize('zero, message', [
    (_zero_query_head, 'layer 0: 1 of 2 query heads have all-zero o_proj columns'),
    (_zero_kv_group, 'layer 0: 1 of {kv} KV groups have all-zero k_proj and v_proj rows'),
    (_zero_ffn_down, 'layer 0: 1 of 96 FFN channels have all-zero down_proj columns'),
    (_zero_ffn_gate, 'layer 0: 1 of 96 FFN channels have all-zero gate_proj rows'),
    (_zero_hidden, 'embedding: 1 of 48 hidden channels have all-zero embedding columns'),
])
def test_check_no_dead_units_names_the_layer(name: str, zero: Any, message: str) -> None:
    seed = 1
    model = masked_model(name, seed, target_for(name, seed))
    exported = export_masked(model)
    check_no_dead_units(exported)
    with torch.no_grad():
        zero(exported, model.pruner.source.head_dim)
    message = message.format(kv=exported.config.num_key_value_heads)
    with pytest.raises(ShearError, match='exported model has dead kept units: ') as error:
        check_no_dead_units(exported)
    assert message in str(error.value)
    assert dead_unit_problems(exported) == [message]


def test_zero_k_proj_alone_is_not_a_dead_kv_group() -> None:
    """A KV group with all-zero keys but live values still contributes (uniform attention)."""
    name = 'tiny-llama-gqa'
    exported = export_masked(masked_model(name, 1, target_for(name, 1)))
    with torch.no_grad():
        exported.model.layers[0].self_attn.k_proj.weight[:exported.config.head_dim] = 0
    check_no_dead_units(exported)


@pytest.mark.parametrize('log_alpha', [None, -10.0])
@pytest.mark.parametrize('name', TINY_MODEL_NAMES)
def test_deterministic_masks_export_no_dead_units(name: str, log_alpha: Optional[float]) -> None:
    """Exports from L0Masks.deterministic() have no dead units, even when every log_alpha is very low."""
    seed = 2
    model = masked_model(name, seed, target_for(name, seed))
    if log_alpha is not None:
        with torch.no_grad():
            for param in model.pruner.l0_masks.parameters():
                param.fill_(log_alpha)
    masks = model.pruner.l0_masks.deterministic()
    if log_alpha is not None:
        for mask_name, mask in masks.items():
            kept = mask[mask != 0]
            assert kept.numel() > 0
            expected = 1.0 if mask_name in BINARY_DETERMINISTIC else KEPT_VALUE_FLOOR
            assert bool((kept == expected).all()), mask_name
    exported = export_pruned_model(model.model, masks, model.pruner.source, model.pruner.target)
    assert dead_unit_problems(exported) == []
    check_no_dead_units(exported)
    batch = random_batch(seed)
    assert max_diff(exported, masked_logits(model, batch), batch) <= TOL


# --------------------------------------------------------------------------- CLI on real checkpoints


def save_composer_checkpoint(folder: Path, pruning: Optional[dict[str, Any]], seed: int = 0) -> Path:
    """Train one batch with a real Composer Trainer and return the monolithic checkpoint it saves."""
    from composer import Trainer
    from torch.utils.data import DataLoader

    torch.manual_seed(seed)
    model = ShearCausalLM('tiny-llama-gqa', tokenizer=ByteLevelTokenizer(), pruning=pruning)
    if pruning is not None:
        randomize_log_alphas(model, seed)
        model.armed_by.update(MASK_CALLBACKS)  # only a checkpoint to export: keep the random masks, no callbacks
    batch = random_batch(seed, batch=4, seq=16)
    rows = [{key: value[i] for key, value in batch.items()} for i in range(4)]
    trainer = Trainer(
        model=model,
        train_dataloader=DataLoader(rows, batch_size=2),
        max_duration='1ba',
        optimizers=torch.optim.AdamW(model.parameters(), lr=1e-3),
        device='cpu',
        save_folder=str(folder),
        save_interval='1ba',
        save_filename='ep{epoch}-ba{batch}.pt',
        progress_bar=False,
        log_to_console=False,
        loggers=[],
    )
    trainer.fit()
    trainer.close()
    checkpoint = folder / 'ep0-ba1.pt'
    assert checkpoint.is_file()
    return checkpoint


@pytest.fixture(scope='module')
def pruning_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = target_for('tiny-llama-gqa', 2)
    return save_composer_checkpoint(tmp_path_factory.mktemp('ckpt'), {'target': target})


@pytest.fixture
def export_cli_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register only the export sub-command, so these tests do not depend on the others."""
    monkeypatch.setattr(cli_main, 'COMMAND_MODULES', ('composer_plugins.cli.export',))


def reference_from_checkpoint(checkpoint: Path) -> ShearCausalLM:
    """A fresh masked model with the checkpoint's weights and log_alphas, in float64 (eval mode)."""
    state = torch.load(checkpoint, map_location='cpu', weights_only=False)['state']['model']
    extra = state['pruner._extra_state']
    target = {key: extra['target'][key] for key in COMMON_TARGET.keys() | MHA_HEADS.keys()}
    model = ShearCausalLM('tiny-llama-gqa', pruning={'target': target})
    model.load_state_dict(state, strict=True)
    return model.double().eval()


def check_exported_dir(out: Path, checkpoint: Path) -> None:
    reference = reference_from_checkpoint(checkpoint)
    batch = random_batch(7)
    # The CLI exports the float32 checkpoint in float32; run that export in float64 too (its folded
    # weights are float32 roundings of the float64 products: a further ~1e-8 at most).
    loaded = AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float64).eval()
    diff = max_diff(loaded, masked_logits(reference, batch), batch)
    log.info('CLI export of %s: max |logit diff| %.3g (float64)', checkpoint.name, diff)
    assert diff <= TOL
    assert ModelShape.from_hf_config(loaded.config) == reference.pruner.target
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
    tokenizer = AutoTokenizer.from_pretrained(out)
    text = 'def f(x):\n    return x + 1\n'
    assert tokenizer(text)['input_ids'] == ByteLevelTokenizer()(text)['input_ids']
    record = json.loads((out / 'pruning.json').read_text())
    assert len(record['kept_layers']) == 1 and len(record['kept_hidden']) == 48


def test_cli_export_monolithic(pruning_checkpoint: Path, tmp_path: Path, export_cli_only: None,
                               caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / 'pruned'
    assert cli_main.main(['export', str(pruning_checkpoint), '--out', str(out)]) == 0
    check_exported_dir(out, pruning_checkpoint)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['pruned']  # no temp dirs left behind

    # A non-empty --out is refused without --force and replaced with it.
    with caplog.at_level(logging.ERROR):
        assert cli_main.main(['export', str(pruning_checkpoint), '--out', str(out)]) == 2
    assert 'not empty' in caplog.text and '--force' in caplog.text
    (out / 'stale.txt').write_text('old')
    assert cli_main.main(['export', str(pruning_checkpoint), '--out', str(out), '--force']) == 0
    assert not (out / 'stale.txt').exists()
    check_exported_dir(out, pruning_checkpoint)


def test_cli_export_distributed_checkpoint_layout(pruning_checkpoint: Path, tmp_path: Path,
                                                  export_cli_only: None) -> None:
    """The same checkpoint in torch.distributed.checkpoint layout (as FSDP2 sharded saves write it)."""
    from torch.distributed.checkpoint.format_utils import torch_save_to_dcp

    sharded = tmp_path / 'ep0-ba1'
    torch_save_to_dcp(pruning_checkpoint, sharded)
    assert (sharded / '.metadata').is_file()
    out = tmp_path / 'pruned'
    assert cli_main.main(['export', str(sharded), '--out', str(out)]) == 0
    check_exported_dir(out, pruning_checkpoint)


def test_cli_rejects_checkpoint_without_pruner(tmp_path: Path, export_cli_only: None,
                                               caplog: pytest.LogCaptureFixture) -> None:
    checkpoint = save_composer_checkpoint(tmp_path / 'ckpt', pruning=None)
    out = tmp_path / 'out'
    with caplog.at_level(logging.ERROR):
        assert cli_main.main(['export', str(checkpoint), '--out', str(out)]) == 2
    assert 'not a pruning checkpoint' in caplog.text and str(checkpoint) in caplog.text
    assert not out.exists()


def test_cli_missing_checkpoint(tmp_path: Path, export_cli_only: None, caplog: pytest.LogCaptureFixture) -> None:
    missing = tmp_path / 'nope.pt'
    with caplog.at_level(logging.ERROR):
        assert cli_main.main(['export', str(missing), '--out', str(tmp_path / 'out')]) == 2
    assert 'does not exist' in caplog.text and str(missing) in caplog.text
    assert not (tmp_path / 'out').exists()


def test_cli_rejects_non_checkpoint_file(tmp_path: Path, export_cli_only: None,
                                         caplog: pytest.LogCaptureFixture) -> None:
    bogus = tmp_path / 'bogus.pt'
    torch.save({'weights': torch.zeros(2)}, bogus)
    with caplog.at_level(logging.ERROR):
        assert cli_main.main(['export', str(bogus), '--out', str(tmp_path / 'out')]) == 2
    assert 'not a Composer checkpoint' in caplog.text


def test_training_forward_keeps_no_kv_cache():
    """Training and eval forwards run with use_cache=False: no DynamicCache object exists afterwards."""
    import gc

    from transformers.cache_utils import Cache

    from composer_plugins.models.causal_lm import ShearCausalLM
    from data_prep.tokenizers import load_tokenizer

    model = ShearCausalLM(source='tiny-llama', tokenizer=load_tokenizer('byte-level'), pretrained=False)
    model.train()
    ids = torch.randint(0, 256, (2, 16))
    outputs = model({'input_ids': ids, 'labels': ids})
    model.loss(outputs, {'input_ids': ids, 'labels': ids}).backward()
    gc.collect()
    assert outputs.past_key_values is None
    assert not [obj for obj in gc.get_objects() if isinstance(obj, Cache)]
    assert model.model.config.use_cache  # the saved config still generates with a cache


BF16_ULP = 2.0 ** -8
"""One bfloat16 unit in the last place, relative (8 significant bits): a bf16 export's folded products,
computed in float32 and rounded once, are within it of the exactly rounded float64 product."""


@pytest.mark.parametrize('name', ['tiny-llama-gqa', 'tiny-qwen2'])
def test_bfloat16_source_exports_bfloat16_rounded_once(name: str) -> None:
    """A bf16 source exports in bf16: slices exact, folded o_proj / down_proj within one bf16 ulp of float64."""
    seed = 2
    model = masked_model(name, seed, target_for(name, seed))
    with torch.no_grad():  # weights that bf16 represents exactly, so both exports slice the same numbers
        for param in model.model.parameters():
            param.copy_(param.to(torch.bfloat16).double())
    masks = model.pruner.l0_masks.deterministic()
    source, target = model.pruner.source, model.pruner.target
    reference = export_pruned_model(model.model, masks, source, target)
    exported = export_pruned_model(model.model.to(torch.bfloat16), masks, source, target)
    assert exported.dtype == torch.bfloat16 and reference.dtype == torch.float64
    folded = ('o_proj.weight', 'down_proj.weight')
    for (key, value), (_, expected) in zip(exported.named_parameters(), reference.named_parameters()):
        value = value.double()
        if key.endswith(folded):
            assert ((value - expected).abs() <= BF16_ULP * expected.abs()).all(), key
        else:
            assert torch.equal(value, expected), key


@pytest.mark.parametrize('name', TINY_MODEL_NAMES)
def test_consume_source_exports_the_same_model_and_frees_the_source(name: str) -> None:
    seed = 0
    model = masked_model(name, seed, target_for(name, seed))
    masks = model.pruner.l0_masks.deterministic()
    source, target = model.pruner.source, model.pruner.target
    kept = export_pruned_model(model.model, masks, source, target)
    consumed = export_pruned_model(model.model, masks, source, target, consume_source=True)
    for (key, value), (_, expected) in zip(consumed.named_parameters(), kept.named_parameters()):
        assert torch.equal(value, expected), key
    assert all(param.is_meta for param in model.model.parameters())


def test_export_shares_no_memory_with_the_source() -> None:
    """Unpruned dimensions are copies too: changing the source afterwards leaves the export as it was."""
    seed = 1
    model = masked_model('tiny-llama', seed, {**target_for('tiny-llama', seed), 'hidden_size': 64})
    exported = export_masked(model)
    before = {key: value.clone() for key, value in exported.state_dict().items()}
    with torch.no_grad():
        for param in model.model.parameters():
            param.add_(1.0)
    for key, value in exported.state_dict().items():
        assert torch.equal(value, before[key]), key
