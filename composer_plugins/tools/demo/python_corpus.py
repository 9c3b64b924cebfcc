"""A real text corpus every installation carries: the Python standard library's source.

Used by the tiny demo and tests: deterministic (sorted files), no download, and with
learnable structure (code).
"""
from __future__ import annotations

import sysconfig
from collections.abc import Iterator
from pathlib import Path


def stdlib_source_files() -> list[Path]:
    """The ``.py`` files of the running interpreter's standard library, sorted, tests excluded."""
    root = Path(sysconfig.get_paths()['stdlib'])
    return sorted(
        p for p in root.glob('*.py') if not p.name.startswith(('test_', '_test'))
    )


def stdlib_documents(max_bytes: int) -> Iterator[str]:
    """Yield whole source files as documents until about ``max_bytes`` bytes are produced."""
    produced = 0
    for path in stdlib_source_files():
        text = path.read_text(encoding='utf-8', errors='replace')
        yield text
        produced += len(text.encode('utf-8'))
        if produced >= max_bytes:
            return


def build_python_corpus_shards(
    out_dir: str | Path,
    seq_len: int,
    train_rows: int,
    eval_rows: int,
    tokenizer_name: str = 'byte-level',
) -> Path:
    """Tokenize standard-library source into ``out_dir/train`` and ``out_dir/eval`` MDS shards.

    The eval rows come from files after the train rows', so they are held out. Returns
    ``out_dir``. Nothing is rewritten when both splits already exist.
    """
    from data_prep.mds import pack_documents, write_token_rows
    from data_prep.tokenizers import load_tokenizer

    out_dir = Path(out_dir)
    if (out_dir / 'train' / 'index.json').is_file() and (out_dir / 'eval' / 'index.json').is_file():
        return out_dir
    tokenizer = load_tokenizer(tokenizer_name)
    approx_bytes = (train_rows + eval_rows) * seq_len * 2 + 100_000
    documents = (tokenizer(text, add_special_tokens=False)['input_ids'] for text in stdlib_documents(approx_bytes))
    rows = pack_documents(documents, seq_len, tokenizer.eos_token_id)
    train = [next(rows) for _ in range(train_rows)]
    held_out = [next(rows) for _ in range(eval_rows)]
    write_token_rows(out_dir / 'train', train, len(tokenizer))
    write_token_rows(out_dir / 'eval', held_out, len(tokenizer))
    return out_dir
