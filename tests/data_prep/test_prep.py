"""`shear prep`: raw text per domain to MDS train/eval rows and a manifest, checked end to end."""
from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest
import zstandard

from composer_plugins.errors import ShearError
from conftest import TINY_YAML
from data_prep import sources
from data_prep.manifest import MANIFEST_NAME, read_manifest
from data_prep.prep import PrepConfig, prepare

SEQ_LEN = 128  # yamls/tiny.yaml's max_seq_len
EOS = 256  # byte-level tokenizer
EVAL_TOKENS = 1000  # 7 rows
TRAIN_TOKENS = 20_000  # 156 rows: code and books run out, wiki does not


def _words(rng: random.Random, count: int) -> str:
    vocab = ['alpha', 'beta', 'gamma', 'delta', 'omega', 'def', 'return', 'x', 'y', 'zeta', 'café', '42']
    return ' '.join(rng.choice(vocab) for _ in range(count))


def _write_inputs(root: Path) -> dict[str, list[str]]:
    """Write the three domains' inputs; return the expected document texts per domain, in order."""
    rng = random.Random(0)
    code_docs = ['def first_document():\n    return "the first document of the code domain"\n' + _words(rng, 30)]
    code_docs += [_words(rng, rng.randint(5, 60)) for _ in range(39)]
    lines = [json.dumps({'text': text, 'id': i}).encode() for i, text in enumerate(code_docs)]
    lines.insert(3, b'{"text": "caf\xe9 in latin-1"}')  # not UTF-8
    lines.insert(5, b'{"text": "unterminated')  # not JSON
    lines.insert(7, b'{"text": ""}')  # empty
    lines.insert(9, b'{"text": "  \\n "}')  # whitespace only: empty
    lines.insert(11, b'')  # blank line: ignored, not counted
    (root / 'code.jsonl').write_bytes(b'\n'.join(lines) + b'\n')

    wiki_docs = [_words(rng, rng.randint(10, 40)) for _ in range(1200)]
    payload = b''.join(json.dumps({'body': text}).encode() + b'\n' for text in wiki_docs)
    (root / 'wiki.jsonl.zst').write_bytes(zstandard.ZstdCompressor().compress(payload))

    books = root / 'books'
    (books / 'part2').mkdir(parents=True)
    files = {'a.txt': _words(rng, 80), 'part2/b.txt': _words(rng, 200), 'part2/c.md': _words(rng, 50),
             'z.txt': _words(rng, 120)}
    for name, text in files.items():
        (books / name).write_text(text, encoding='utf-8')
    (books / 'empty.txt').write_text('')
    (books / 'latin1.txt').write_bytes('naïve'.encode('latin-1'))
    (books / '.hidden.txt').write_text('never read')
    book_docs = [files['a.txt'], files['part2/b.txt'], files['part2/c.md'], files['z.txt']]
    return {'code': code_docs, 'wiki': wiki_docs, 'books': book_docs}


def _config(root: Path, out: Path, workers: int = 1, **changes) -> PrepConfig:
    values = dict(
        domains={'code': [str(root / 'code.jsonl')], 'wiki': [str(root / 'wiki.jsonl.zst')],
                 'books': [str(root / 'books')]},
        tokenizer='byte-level', seq_len=SEQ_LEN, train_tokens=TRAIN_TOKENS, eval_tokens=EVAL_TOKENS,
        out=out, workers=workers, text_key='text',
    )
    values.update(changes)
    return PrepConfig(**values)


def _wiki_key_config(root: Path, out: Path, workers: int = 1) -> PrepConfig:
    """The wiki domain stores its text under ``body``: prep it with its own --text-key run."""
    return _config(root, out, workers, domains={'wiki': [str(root / 'wiki.jsonl.zst')]}, text_key='body')


@pytest.fixture(scope='module')
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    root = tmp_path_factory.mktemp('inputs')
    return root, _write_inputs(root)


@pytest.fixture(scope='module')
def prepared(inputs, tmp_path_factory) -> Path:
    """code + books (text key ``text``) and wiki (``body``) prepared with one worker."""
    root, _ = inputs
    out = tmp_path_factory.mktemp('prepared')
    config = _config(root, out / 'mix', domains={'code': [str(root / 'code.jsonl')], 'books': [str(root / 'books')]})
    prepare(config)
    prepare(_wiki_key_config(root, out / 'wiki_only'))
    return out


def _read_rows(split_dir: Path) -> list[np.ndarray]:
    from streaming import StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    clean_stale_shared_memory()
    dataset = StreamingDataset(local=str(split_dir), split=None, shuffle=False, batch_size=1)
    return [np.asarray(dataset[i]['tokens']) for i in range(len(dataset))]


def _expected_splits(docs: list[str], eval_rows: int, train_rows: int) -> tuple[list[int], list[int], int, int]:
    """The spec, reimplemented: eval packs the first documents; train starts at the next unused one.

    Returns the eval tokens, the train tokens, and the documents started in each split.
    """
    encoded = [list(text.encode('utf-8')) + [EOS] for text in docs]

    def pack(start: int, rows: int) -> tuple[list[int], int]:
        stream: list[int] = []
        used = 0
        for ids in encoded[start:]:
            if len(stream) >= rows * SEQ_LEN:
                break
            stream.extend(ids)
            used += 1
        full = len(stream) // SEQ_LEN * SEQ_LEN
        return stream[:min(full, rows * SEQ_LEN)], used

    eval_tokens, eval_docs = pack(0, eval_rows)
    train_tokens, _ = pack(eval_docs, train_rows)
    starts, position = [], 0
    for ids in encoded[eval_docs:]:
        starts.append(position)
        position += len(ids)
    train_docs = sum(1 for start in starts if start < len(train_tokens))
    return eval_tokens, train_tokens, eval_docs, train_docs


@pytest.mark.parametrize(('folder', 'domain'), [('mix', 'code'), ('mix', 'books'), ('wiki_only', 'wiki')])
def test_rows_match_the_packed_document_stream(prepared, inputs, folder, domain):
    _, expected_docs = inputs
    manifest = read_manifest(prepared / folder)
    stats = manifest['domains'][domain]['splits']
    eval_tokens, train_tokens, eval_docs, train_docs = _expected_splits(
        expected_docs[domain], EVAL_TOKENS // SEQ_LEN, TRAIN_TOKENS // SEQ_LEN,
    )
    rows = {split: _read_rows(prepared / folder / domain / split) for split in ('eval', 'train')}
    for split, tokens in (('eval', eval_tokens), ('train', train_tokens)):
        assert all(row.shape == (SEQ_LEN,) and row.dtype == np.uint16 for row in rows[split])
        assert np.concatenate(rows[split]).tolist() == tokens
        assert stats[split]['rows'] == len(rows[split]) == len(tokens) // SEQ_LEN
        assert stats[split]['tokens'] == len(tokens)
    assert stats['eval']['rows'] == EVAL_TOKENS // SEQ_LEN
    assert (stats['eval']['documents'], stats['train']['documents']) == (eval_docs, train_docs)
    assert EOS in np.concatenate(rows['train']).tolist()
    eval_set = {row.tobytes() for row in rows['eval']}
    assert not any(row.tobytes() in eval_set for row in rows['train'])


def test_manifest_and_first_row(prepared, inputs):
    from data_prep.tokenizers import load_tokenizer

    _, expected_docs = inputs
    manifest = read_manifest(prepared / 'mix')
    assert {key: manifest[key] for key in ('version', 'tokenizer', 'vocab_size', 'eos_token_id', 'seq_len',
                                            'token_dtype')} == {
        'version': 2, 'tokenizer': 'byte-level', 'vocab_size': 258, 'eos_token_id': EOS, 'seq_len': SEQ_LEN,
        'token_dtype': 'uint16'}
    from composer_plugins.data.data_model_check import vocab_fingerprint
    assert manifest['vocab_sha256'] == vocab_fingerprint(load_tokenizer('byte-level'))
    assert list(manifest['domains']) == ['code', 'books']
    first_row = _read_rows(prepared / 'mix' / 'code' / 'eval')[0]
    assert load_tokenizer('byte-level').decode(first_row.tolist()).startswith(expected_docs['code'][0][:100])
    code, books = manifest['domains']['code'], manifest['domains']['books']
    assert code['skipped'] == {'invalid_utf8': 1, 'invalid_json': 1, 'empty_documents': 2}
    assert books['skipped'] == {'invalid_utf8': 1, 'invalid_json': 0, 'empty_documents': 1}
    assert code['inputs'] == [{'spec': str(inputs[0] / 'code.jsonl'), 'format': 'jsonl',
                               'path': str(inputs[0] / 'code.jsonl'), 'files': 1}]
    assert books['inputs'][0]['format'] == 'text_dir' and books['inputs'][0]['files'] == 6
    wiki = read_manifest(prepared / 'wiki_only')['domains']['wiki']
    assert wiki['splits']['train']['rows'] == TRAIN_TOKENS // SEQ_LEN  # enough input: the full request
    assert wiki['inputs'][0]['format'] == 'jsonl.zst'
    assert sorted(p.name for p in (prepared / 'mix').iterdir()) == ['books', 'code', MANIFEST_NAME]


def test_gzip_input_and_several_inputs_per_domain(inputs, tmp_path):
    root, expected_docs = inputs
    with gzip.open(tmp_path / 'code.jsonl.gz', 'wb') as f:
        f.write((root / 'code.jsonl').read_bytes())
    manifest = prepare(_config(root, tmp_path / 'out', domains={
        'mixed': [str(tmp_path / 'code.jsonl.gz'), str(root / 'books')]}, train_tokens=100_000))
    stats = manifest.domains['mixed']
    assert [i.format for i in stats.inputs] == ['jsonl.gz', 'text_dir']
    assert stats.skipped.invalid_utf8 == 2 and stats.skipped.empty_documents == 3
    docs = expected_docs['code'] + expected_docs['books']
    _, train_tokens, _, train_docs = _expected_splits(docs, EVAL_TOKENS // SEQ_LEN, 100_000 // SEQ_LEN)
    assert stats.splits['train'].tokens == len(train_tokens)
    assert stats.splits['train'].documents == train_docs


def test_one_and_two_workers_write_identical_output(inputs, tmp_path, monkeypatch):
    root, _ = inputs
    monkeypatch.setattr(sources, 'CHUNK_DOCUMENTS', 16)  # many chunks in flight; wiki stops mid-input
    outputs = []
    for workers in (1, 2):
        out = tmp_path / f'workers{workers}'
        prepare(_wiki_key_config(root, out, workers))
        outputs.append({p.relative_to(out): p.read_bytes() for p in sorted(out.rglob('*')) if p.is_file()})
    assert outputs[0].keys() == outputs[1].keys()
    assert outputs[0] == outputs[1]
    manifest = json.loads(outputs[1][Path(MANIFEST_NAME)])
    assert manifest['domains']['wiki']['splits']['train']['rows'] == TRAIN_TOKENS // SEQ_LEN


@pytest.mark.parametrize(('name', 'make', 'message'), [
    ('missing.jsonl', lambda path: None, 'does not exist'),
    ('data.csv', lambda path: path.write_text('text\nhello\n'), "unknown extension of 'data.csv'"),
    ('empty_dir', lambda path: path.mkdir(), 'contains no'),
])
def test_bad_inputs_are_named(tmp_path, name, make, message):
    path = tmp_path / name
    make(path)
    config = _config(tmp_path, tmp_path / 'out', domains={'d': [str(path)]})
    with pytest.raises(ShearError, match=message) as info:
        prepare(config)
    assert str(path) in str(info.value)
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize(('changes', 'message'), [
    ({'domains': {'a/b': ['x.jsonl']}}, "--domain 'a/b': a domain name"),
    ({'eval_tokens': 100}, '--eval-tokens 100 is less than --seq-len 128'),
    ({'workers': 0}, '--workers 0'),
])
def test_bad_options_are_named(tmp_path, changes, message):
    with pytest.raises(ShearError, match=message):
        prepare(_config(tmp_path, tmp_path / 'out', **changes))


def test_failure_after_a_finished_domain_leaves_no_output(inputs, tmp_path):
    root, _ = inputs
    out = tmp_path / 'out'
    config = _config(root, out, domains={'wiki': [str(root / 'wiki.jsonl.zst')],
                                         'code': [str(root / 'books'), str(root / 'code.jsonl')]}, text_key='body')
    with pytest.raises(ShearError, match=r"code\.jsonl:1: no key 'body'"):
        prepare(config)
    assert list(tmp_path.iterdir()) == []  # neither --out nor a staging folder


def test_domain_without_train_rows_is_an_error(inputs, tmp_path):
    root, _ = inputs
    config = _config(root, tmp_path / 'out', domains={'books': [str(root / 'books')]}, eval_tokens=50_000)
    with pytest.raises(ShearError, match="domain 'books': no train rows"):
        prepare(config)
    assert not (tmp_path / 'out').exists()
    assert list(tmp_path.iterdir()) == []  # no staging folder left either


def test_non_empty_out_fails_before_any_work(tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'keep.txt').write_text('mine')
    # The input does not exist either: the --out check must come first.
    config = _config(tmp_path, out, domains={'d': [str(tmp_path / 'missing.jsonl')]})
    with pytest.raises(ShearError, match='is not empty; pass --force'):
        prepare(config)
    assert [p.name for p in tmp_path.iterdir()] == ['out']
    assert [p.name for p in out.iterdir()] == ['keep.txt']


def test_hf_input_fails_clearly_offline(tmp_path, monkeypatch):
    monkeypatch.setenv('HF_DATASETS_OFFLINE', '1')
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    config = _config(tmp_path, tmp_path / 'out', domains={'d': ['hf:no-such-org/no-such-dataset:validation']})
    with pytest.raises(ShearError, match="hf:no-such-org/no-such-dataset:validation.*split 'validation'"):
        prepare(config)


def test_cli_prep_force_and_training_config(inputs, tmp_path, capsys):
    from composer_plugins.cli.main import main
    from composer_plugins.config.load import load_run_config

    root, _ = inputs
    out = tmp_path / 'data'
    out.mkdir()
    (out / 'old.txt').write_text('replaced by --force')
    argv = ['prep', '--domain', f'code={root / "code.jsonl"}', '--domain', f'code={root / "books"}',
            '--tokenizer', 'byte-level', '--seq-len', str(SEQ_LEN), '--train-tokens', '3000',
            '--eval-tokens', str(EVAL_TOKENS), '--out', str(out), '--workers', '1']
    assert main(argv) == 2  # not empty, no --force
    assert main([*argv, '--force']) == 0
    printed = capsys.readouterr().out
    assert f'Manifest: {out / MANIFEST_NAME}' in printed
    assert 'code: train 23 rows (2944 tokens), eval 7 rows (896 tokens)' in printed
    assert sorted(p.name for p in out.iterdir()) == ['code', MANIFEST_NAME]
    cfg = load_run_config(str(TINY_YAML), [f'variables.data_dir={out}/code'])
    assert cfg.train_loader.dataset.local == f'{out}/code'


def _other_tokenizer(folder: Path) -> Path:
    """A real fast tokenizer (a small BPE trained here) whose ids differ from the byte-level one's."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token='<unk>'))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel()
    bpe.train_from_iterator(['def main(): return 1'] * 50,
                            trainers.BpeTrainer(vocab_size=300, special_tokens=['<unk>']))
    PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token='<unk>').save_pretrained(folder)
    return folder


def test_training_refuses_data_of_another_tokenizer(prepared, tmp_path):
    """Data prepared with the byte-level tokenizer: a model with a smaller vocabulary fails at config load,
    another tokenizer of a fitting size fails at run start, before any training; both name both sides."""
    from composer_plugins.config.load import load_run_config
    from composer_plugins.errors import ConfigError
    from composer_plugins.train_entry import run
    from conftest import TINY_YAML

    data = prepared / 'mix' / 'code'
    overrides = [f'variables.data_dir={data}', f'variables.run_dir={tmp_path / "run"}', 'loggers=null']
    with pytest.raises(ConfigError, match=r"^train_loader\.dataset\.local: '.*code' was prepared with tokenizer "
                                          r"'byte-level' \(258 tokens, .*manifest.json\), "
                                          r"but model.source 'tiny-llama' has vocab_size 200"):
        load_run_config(str(TINY_YAML), [*overrides, 'model.config_overrides={vocab_size: 200}'])

    other = _other_tokenizer(tmp_path / 'bpe')
    cfg = load_run_config(str(TINY_YAML), [*overrides, f'tokenizer.name={other}'])
    with pytest.raises(ConfigError, match=rf"prepared with tokenizer 'byte-level' \(258 tokens\), but the run trains "
                                          rf"with tokenizer.name '{other}' \(\d+ tokens\), whose token ids differ"):
        run(cfg)
    assert not (tmp_path / 'run').exists()  # refused before anything was written
