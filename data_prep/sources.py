"""Document sources of ``shear prep``: resolve input specs and iterate their documents.

An input is one of:

* a ``.jsonl``, ``.jsonl.gz`` or ``.jsonl.zst`` file: one JSON object per line, the
  document text under a key (default ``text``);
* a folder of plain text files: each file (recursively, sorted by relative path, hidden
  names skipped) is one document;
* ``hf:NAME[:SPLIT]``: a Hugging Face dataset, streamed with ``datasets`` (needs a network).

Files are read as bytes and decoded with strict UTF-8 per line (JSONL) or per file (text
folders). Lines that are not valid UTF-8, lines that are not valid JSON and empty (or
whitespace-only) documents are skipped and counted in :class:`SkipCounts`. Blank lines of
a JSONL file are not documents and are ignored without counting.
"""
from __future__ import annotations

import dataclasses
import gzip
import io
import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Optional

from data_prep.errors import ShearError

log = logging.getLogger(__name__)

HF_PREFIX = 'hf:'
JSONL_FORMATS = {'.jsonl': 'jsonl', '.jsonl.gz': 'jsonl.gz', '.jsonl.zst': 'jsonl.zst'}
TEXT_DIR_FORMAT = 'text_dir'
HF_FORMAT = 'hf'
# Documents per chunk handed to a tokenizer worker, and a cap on a chunk's characters.
# Both are fixed (never derived from the worker count), so chunk boundaries, and with
# them the skip counts, are the same for any number of workers.
CHUNK_DOCUMENTS = 256
CHUNK_CHARS = 1 << 20
ZSTD_MAX_WINDOW = 1 << 31  # some corpora (e.g. The Pile) are compressed with --long windows


@dataclass
class SkipCounts:
    """What was skipped while reading a domain's inputs.

    Attributes:
        invalid_utf8: JSONL lines, or text files, that are not valid UTF-8.
        invalid_json: JSONL lines that are not valid JSON.
        empty_documents: Documents whose text is empty or whitespace only, or that
            tokenize to no tokens.
    """
    invalid_utf8: int = 0
    invalid_json: int = 0
    empty_documents: int = 0

    def add(self, other: SkipCounts) -> None:
        """Add ``other``'s counts to these."""
        self.invalid_utf8 += other.invalid_utf8
        self.invalid_json += other.invalid_json
        self.empty_documents += other.empty_documents

    def total(self) -> int:
        """All skipped items."""
        return self.invalid_utf8 + self.invalid_json + self.empty_documents


@dataclass(frozen=True)
class InputSource:
    """One resolved input of a domain.

    Attributes:
        spec: The input as given on the command line.
        format: ``jsonl``, ``jsonl.gz``, ``jsonl.zst``, ``text_dir`` or ``hf``.
        path: Absolute path of the file or folder; None for ``hf``.
        files: The files read, in order (the file itself, or a folder's text files).
        hf_name: Dataset name for ``hf``.
        hf_split: Dataset split for ``hf``.
    """
    spec: str
    format: str
    path: Optional[Path] = None
    files: tuple[Path, ...] = ()
    hf_name: Optional[str] = None
    hf_split: Optional[str] = None


@dataclass
class DocumentChunk:
    """Consecutive documents of a domain and the skips met while reading them.

    Attributes:
        texts: Non-empty document texts, in input order.
        skipped: Items skipped since the previous chunk.
    """
    texts: list[str]
    skipped: SkipCounts = field(default_factory=SkipCounts)


def resolve_input(spec: str) -> InputSource:
    """Check an input spec and describe it; nothing is read yet.

    Args:
        spec: A path to a JSONL file or a folder, or ``hf:NAME[:SPLIT]``.

    Returns:
        The resolved input.

    Raises:
        ShearError: The path does not exist, has an unknown extension, or is a folder with
            no files; or the ``hf:`` spec has no name.
    """
    if spec.startswith(HF_PREFIX):
        name, _, split = spec[len(HF_PREFIX):].partition(':')
        if not name:
            raise ShearError(f'input {spec!r}: expected hf:NAME[:SPLIT]')
        return InputSource(spec=spec, format=HF_FORMAT, hf_name=name, hf_split=split or 'train')
    path = Path(spec).expanduser().absolute()
    if not path.exists():
        raise ShearError(f'input {spec!r}: {path} does not exist')
    if path.is_dir():
        files = _text_files(path)
        if not files:
            raise ShearError(f'input {spec!r}: folder {path} contains no (non-hidden) files')
        return InputSource(spec=spec, format=TEXT_DIR_FORMAT, path=path, files=tuple(files))
    for suffix, fmt in JSONL_FORMATS.items():
        if path.name.endswith(suffix):
            return InputSource(spec=spec, format=fmt, path=path, files=(path,))
    raise ShearError(
        f'input {spec!r}: unknown extension of {path.name!r}; expected one of '
        f'{", ".join(JSONL_FORMATS)}, a folder of text files or hf:NAME[:SPLIT]',
    )


def _text_files(folder: Path) -> list[Path]:
    """Regular files under ``folder``, recursively, hidden names skipped, sorted by relative path."""
    files = []
    for path in folder.rglob('*'):
        relative = path.relative_to(folder)
        if path.is_file() and not any(part.startswith('.') for part in relative.parts):
            files.append(relative)
    return [folder / relative for relative in sorted(files, key=lambda p: p.as_posix())]


def iter_documents(source: InputSource, text_key: str, skipped: SkipCounts) -> Iterator[str]:
    """Yield the non-empty document texts of one input, counting skips into ``skipped``.

    Args:
        source: A resolved input.
        text_key: The JSON key (or dataset column) holding the text.
        skipped: Incremented as items are skipped.

    Raises:
        ShearError: A file cannot be read or decompressed, a JSON record has no string
            under ``text_key``, or a Hugging Face dataset cannot be loaded.
    """
    if source.format == TEXT_DIR_FORMAT:
        texts: Iterable[str] = _text_dir_documents(source, skipped)
    elif source.format == HF_FORMAT:
        texts = _hf_documents(source, text_key)
    else:
        texts = _jsonl_documents(source, text_key, skipped)
    for text in texts:
        if text.strip():
            yield text
        else:
            skipped.empty_documents += 1


def chunk_documents(sources: Iterable[InputSource], text_key: str) -> Iterator[DocumentChunk]:
    """Group the documents of ``sources`` (in order) into chunks for the tokenizer pool.

    A chunk closes after :data:`CHUNK_DOCUMENTS` documents or :data:`CHUNK_CHARS`
    characters. The last chunk carries the skips after the last document and may have
    no texts.
    """
    live = SkipCounts()
    texts: list[str] = []
    chars = 0
    for source in sources:
        for text in iter_documents(source, text_key, live):
            texts.append(text)
            chars += len(text)
            if len(texts) >= CHUNK_DOCUMENTS or chars >= CHUNK_CHARS:
                yield DocumentChunk(texts, dataclasses.replace(live))
                live, texts, chars = SkipCounts(), [], 0
    if texts or live.total():
        yield DocumentChunk(texts, live)


def _text_dir_documents(source: InputSource, skipped: SkipCounts) -> Iterator[str]:
    for path in source.files:
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ShearError(f'input {source.spec!r}: cannot read {path}: {err}') from err
        try:
            yield data.decode('utf-8')
        except UnicodeDecodeError:
            skipped.invalid_utf8 += 1


def _jsonl_documents(source: InputSource, text_key: str, skipped: SkipCounts) -> Iterator[str]:
    assert source.path is not None
    path = source.path
    with _open_binary(source) as stream:
        line_number = 0
        try:
            for raw in stream:
                line_number += 1
                text = _jsonl_text(raw, line_number, path, text_key, skipped)
                if text is not None:
                    yield text
        except ShearError:
            raise
        except Exception as err:  # gzip / zstandard raise several types for corrupt input
            raise ShearError(f'{path}: cannot read line {line_number + 1}: {err}') from err


def _jsonl_text(raw: bytes, line_number: int, path: Path, text_key: str, skipped: SkipCounts) -> Optional[str]:
    """The document text of one JSONL line, or None when the line is blank or skipped."""
    if not raw.strip():
        return None
    try:
        line = raw.decode('utf-8')
    except UnicodeDecodeError:
        skipped.invalid_utf8 += 1
        return None
    if line_number == 1:
        line = line.lstrip('\ufeff')
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        skipped.invalid_json += 1
        return None
    if not isinstance(record, dict):
        raise ShearError(f'{path}:{line_number}: expected a JSON object, got {type(record).__name__}')
    if text_key not in record:
        raise ShearError(
            f'{path}:{line_number}: no key {text_key!r} (keys: {", ".join(map(repr, record)) or "none"}); '
            'choose the text field with --text-key',
        )
    text = record[text_key]
    if not isinstance(text, str):
        raise ShearError(f'{path}:{line_number}: {text_key!r} is {type(text).__name__}, expected a string')
    return text


@contextmanager
def _open_binary(source: InputSource) -> Iterator[BinaryIO]:
    """Open a (possibly compressed) JSONL file as a binary stream that iterates lines."""
    assert source.path is not None
    try:
        raw = open(source.path, 'rb')
    except OSError as err:
        raise ShearError(f'input {source.spec!r}: cannot open {source.path}: {err}') from err
    with raw:
        if source.format == 'jsonl.gz':
            with gzip.GzipFile(fileobj=raw, mode='rb') as stream:
                yield stream  # type: ignore[misc]
        elif source.format == 'jsonl.zst':
            import zstandard

            reader = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).stream_reader(raw)
            with io.BufferedReader(reader) as stream:  # type: ignore[arg-type]
                yield stream  # type: ignore[misc]
        else:
            yield raw


def _hf_documents(source: InputSource, text_key: str) -> Iterator[str]:
    """Stream a Hugging Face dataset split; any failure (offline, unknown name) is a ShearError."""
    try:
        import datasets

        dataset = datasets.load_dataset(source.hf_name, split=source.hf_split, streaming=True)
        rows = iter(dataset)
    except Exception as err:
        raise ShearError(
            f'input {source.spec!r}: cannot load Hugging Face dataset {source.hf_name!r} split '
            f'{source.hf_split!r} (is a network available?): {err}',
        ) from err
    row_number = 0
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except Exception as err:
            raise ShearError(f'input {source.spec!r}: reading row {row_number + 1} failed: {err}') from err
        row_number += 1
        text = row.get(text_key)
        if not isinstance(text, str):
            raise ShearError(
                f'input {source.spec!r} row {row_number}: no string column {text_key!r} '
                f'(columns: {", ".join(map(repr, row))}); choose it with --text-key',
            )
        yield text
