"""``shear prep`` orchestration: per domain, an eval split then a train split of MDS token rows.

Output layout (other code relies on it)::

    OUT/manifest.json
    OUT/<domain>/eval/   MDS dataset: index.json + shards, column ``tokens``
    OUT/<domain>/train/

Each domain's documents are tokenized in input order, an EOS is appended to each, and
the stream is cut into rows of ``seq_len`` tokens (:func:`pack_documents`). The first
``floor(eval_tokens / seq_len)`` rows form the eval split. The rest of the document that
straddles the last eval row is dropped, and the train split packs the following documents
into ``floor(train_tokens / seq_len)`` rows, so no document is in both splits. A domain
that runs out early gets fewer rows (a warning; the manifest records the actual counts);
one with no train row is an error. Everything is written to a staging folder that
replaces OUT only at the end.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import re
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from data_prep.errors import ShearError
from data_prep.manifest import MANIFEST_NAME, vocab_fingerprint
from data_prep.mds import pack_documents, token_dtype, write_token_rows
from data_prep.output_dirs import check_out_dir, staged_output
from data_prep.sources import InputSource, SkipCounts, chunk_documents, resolve_input
from data_prep.tokenize import TokenizedChunk, TokenizerPool, load_prep_tokenizer

log = logging.getLogger(__name__)

MANIFEST_VERSION = 2  # 2: vocab_sha256
SPLITS = ('eval', 'train')  # in the order they are taken from each domain's stream
DOMAIN_NAME = re.compile(r'^[A-Za-z0-9_-]+$')


def default_workers() -> int:
    """``min(4, cpu count)``."""
    return max(1, min(4, os.cpu_count() or 1))


@dataclass
class PrepConfig:
    """What ``shear prep`` builds.

    Attributes:
        domains: Domain name to input specs (paths or ``hf:NAME[:SPLIT]``), in order.
        tokenizer: ``byte-level``, a local tokenizer directory or a hub id.
        seq_len: Tokens per row.
        train_tokens: Train tokens per domain (``floor(train_tokens / seq_len)`` rows).
        eval_tokens: Eval tokens per domain (``floor(eval_tokens / seq_len)`` rows).
        out: Output folder.
        workers: Tokenizer processes.
        text_key: JSON key (or dataset column) of the document text.
        force: Replace a non-empty ``out``.
        seed: Recorded in the manifest; preparation itself has no randomness.
    """
    domains: dict[str, list[str]]
    tokenizer: str
    seq_len: int
    train_tokens: int
    eval_tokens: int
    out: Path
    workers: int = field(default_factory=default_workers)
    text_key: str = 'text'
    force: bool = False
    seed: int = 0

    def validate(self) -> None:
        """Check values that need no file access.

        Raises:
            ShearError: Naming the option and the bad value.
        """
        if not self.domains:
            raise ShearError('no --domain given; pass --domain NAME=PATH at least once')
        for name, inputs in self.domains.items():
            if not DOMAIN_NAME.match(name):
                raise ShearError(f'--domain {name!r}: a domain name may only hold letters, digits, "_" and "-"')
            if not inputs:
                raise ShearError(f'--domain {name!r}: no inputs')
        if self.seq_len < 2:
            raise ShearError(f'--seq-len {self.seq_len}: must be at least 2')
        for option, tokens in (('--train-tokens', self.train_tokens), ('--eval-tokens', self.eval_tokens)):
            if tokens < self.seq_len:
                raise ShearError(
                    f'{option} {tokens} is less than --seq-len {self.seq_len}: the split would have no rows',
                )
        if self.workers < 1:
            raise ShearError(f'--workers {self.workers}: must be at least 1')
        if not self.text_key:
            raise ShearError('--text-key must not be empty')


def parse_domain_args(values: list[str]) -> dict[str, list[str]]:
    """Turn repeated ``NAME=PATH`` values into ``{name: [paths...]}`` (first-seen order).

    Raises:
        ShearError: A value has no ``=``, or an empty name or path.
    """
    domains: dict[str, list[str]] = {}
    for value in values:
        name, sep, spec = value.partition('=')
        if not sep or not name or not spec:
            raise ShearError(f'--domain {value!r}: expected NAME=PATH (e.g. code=data/code.jsonl)')
        domains.setdefault(name, []).append(spec)
    return domains


@dataclass
class SplitStats:
    """One split of one domain.

    Attributes:
        rows: Rows written.
        tokens: ``rows * seq_len``.
        documents: Documents whose first token is in one of the rows.
    """
    rows: int
    tokens: int
    documents: int


@dataclass
class InputRecord:
    """One input of a domain as recorded in the manifest.

    Attributes:
        spec: As given on the command line.
        format: ``jsonl``, ``jsonl.gz``, ``jsonl.zst``, ``text_dir`` or ``hf``.
        path: Absolute path (``hf:...`` spec for Hugging Face datasets).
        files: Files in it (1 for a JSONL file, the text files of a folder, None for ``hf``).
    """
    spec: str
    format: str
    path: str
    files: Optional[int]

    @classmethod
    def of(cls, source: InputSource) -> InputRecord:
        """Record of a resolved input."""
        if source.path is None:
            return cls(source.spec, source.format, source.spec, None)
        return cls(source.spec, source.format, str(source.path), len(source.files))


@dataclass
class DomainManifest:
    """One domain of the manifest.

    Attributes:
        inputs: The domain's inputs, in reading order.
        splits: ``eval`` and ``train`` statistics.
        skipped: Items skipped in the part of the input that was read (reading stops once
            the train split is full, at a chunk boundary of fixed size).
    """
    inputs: list[InputRecord]
    splits: dict[str, SplitStats]
    skipped: SkipCounts


@dataclass
class Manifest:
    """``OUT/manifest.json``.

    Attributes:
        version: Schema version.
        tokenizer: Tokenizer name as given.
        vocab_size: ``len(tokenizer)``.
        vocab_sha256: fingerprint of the token-to-id map, which training checks against its tokenizer
            (:func:`data_prep.manifest.vocab_fingerprint`).
        eos_token_id: Id appended after each document.
        seq_len: Tokens per row.
        token_dtype: NumPy dtype of the MDS ``tokens`` column (``uint16`` or ``uint32``).
        requested: The requested ``train_tokens`` and ``eval_tokens`` per domain.
        text_key: JSON key of the document text.
        seed: As given (unused by preparation).
        domains: Per domain name.
    """
    version: int
    tokenizer: str
    vocab_size: int
    eos_token_id: int
    seq_len: int
    token_dtype: str
    requested: dict[str, int]
    text_key: str
    seed: int
    domains: dict[str, DomainManifest]
    vocab_sha256: Optional[str] = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        return dataclasses.asdict(self)

    def write(self, out_dir: Path) -> Path:
        """Write ``manifest.json`` into ``out_dir``; returns its path."""
        path = out_dir / MANIFEST_NAME
        path.write_text(json.dumps(self.to_json(), indent=2) + '\n')
        return path


class DocumentStream:
    """The token ids of a domain's documents, one at a time, accumulating skip counts.

    A chunk's skip counts are added when the chunk is taken, and documents that
    tokenize to nothing count as empty, so the counts cover exactly the chunks read.
    """

    def __init__(self, chunks: Iterator[TokenizedChunk]) -> None:
        self._chunks = chunks
        self.skipped = SkipCounts()

    def __iter__(self) -> Iterator[list[int]]:
        for chunk in self._chunks:
            self.skipped.add(chunk.skipped)
            for ids in chunk.documents:
                if ids:
                    yield ids
                else:
                    self.skipped.empty_documents += 1


class _StartCounter:
    """Wrap a document iterator, remembering where documents start in the packed stream."""

    def __init__(self, documents: Iterator[list[int]], seq_len: int) -> None:
        self._documents = documents
        self.consumed = 0
        self._offset = 0
        # Documents starting after the last full row all lie in its < seq_len leftover tokens.
        self._recent_starts: deque[int] = deque(maxlen=seq_len)

    def __iter__(self) -> Iterator[list[int]]:
        for ids in self._documents:
            self._recent_starts.append(self._offset)
            self.consumed += 1
            self._offset += len(ids) + 1  # + EOS
            yield ids

    def started_before(self, position: int) -> int:
        """Documents consumed whose first token is before ``position``."""
        return self.consumed - sum(1 for start in self._recent_starts if start >= position)


def write_split(
    out_dir: Path, documents: Iterator[list[int]], max_rows: int, seq_len: int, eos_id: int, vocab_size: int,
    progress: Any,
) -> SplitStats:
    """Pack ``documents`` into at most ``max_rows`` rows and write them as MDS under ``out_dir``.

    Stops pulling documents once ``max_rows`` rows are written; the leftover of the last
    document is dropped.
    """
    counter = _StartCounter(documents, seq_len)
    rows = itertools.islice(pack_documents(iter(counter), seq_len, eos_id), max_rows)

    def with_progress() -> Iterator[np.ndarray]:
        for row in rows:
            progress.update(seq_len)
            yield row

    written = write_token_rows(out_dir, with_progress(), vocab_size)
    return SplitStats(rows=written, tokens=written * seq_len, documents=counter.started_before(written * seq_len))


def prep_domain(
    name: str, sources: list[InputSource], config: PrepConfig, tokenizer: Any, pool: TokenizerPool,
    domain_dir: Path,
) -> DomainManifest:
    """Write the eval and train splits of one domain under ``domain_dir``.

    Raises:
        ShearError: The domain yields no train row.
    """
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    wanted = {'eval': config.eval_tokens // config.seq_len, 'train': config.train_tokens // config.seq_len}
    chunks = pool.tokenize(chunk_documents(sources, config.text_key))
    stream = DocumentStream(chunks)
    documents = iter(stream)
    vocab_size = len(tokenizer)
    splits: dict[str, SplitStats] = {}
    total = sum(wanted.values()) * config.seq_len
    try:
        with logging_redirect_tqdm(), tqdm(total=total, desc=f'prep {name}', unit='tok', unit_scale=True,
                                           file=sys.stderr, mininterval=1.0, dynamic_ncols=True,
                                           delay=2.0) as progress:  # no ETA from the tokenizer processes' start-up
            for split in SPLITS:
                splits[split] = write_split(
                    domain_dir / split, documents, wanted[split], config.seq_len, tokenizer.eos_token_id,
                    vocab_size, progress,
                )
    finally:
        chunks.close()  # stops reading when the splits are full before the input ends
    for split in SPLITS:
        got = splits[split].rows
        if got < wanted[split]:
            log.warning('Domain %r ran out of input: %s split has %d of %d rows (%d tokens)',
                        name, split, got, wanted[split], splits[split].tokens)
    if splits['train'].rows == 0:
        raise ShearError(
            f'domain {name!r}: no train rows ({splits["eval"].rows} eval rows used up its input of '
            f'{sum(s.documents for s in splits.values())} documents); add input or lower --eval-tokens',
        )
    if stream.skipped.total():
        log.warning('Domain %r: skipped %d lines not valid UTF-8, %d invalid JSON lines, %d empty documents',
                    name, stream.skipped.invalid_utf8, stream.skipped.invalid_json, stream.skipped.empty_documents)
    return DomainManifest(inputs=[InputRecord.of(s) for s in sources], splits=splits, skipped=stream.skipped)


def prepare(config: PrepConfig) -> Manifest:
    """Run ``shear prep``: validate, then tokenize every domain into a staged ``config.out``.

    Args:
        config: What to build.

    Returns:
        The manifest written to ``config.out / manifest.json``.

    Raises:
        ShearError: Bad options, a non-empty ``out`` without ``force`` (before any work),
            a missing or unknown input, an unloadable tokenizer or a domain with no train row.
    """
    out = Path(config.out).expanduser().absolute()
    check_out_dir(out, config.force)
    config.validate()
    sources = {name: [resolve_input(spec) for spec in specs] for name, specs in config.domains.items()}
    tokenizer = _load_tokenizer(config.tokenizer)
    dtype = token_dtype(len(tokenizer))
    domains: dict[str, DomainManifest] = {}
    with staged_output(out) as staging, TokenizerPool(config.tokenizer, config.workers, tokenizer) as pool:
        for name, domain_sources in sources.items():
            log.info('Domain %r: %d input(s) -> %s', name, len(domain_sources), out / name)
            domains[name] = prep_domain(name, domain_sources, config, tokenizer, pool, staging / name)
        manifest = Manifest(
            version=MANIFEST_VERSION, tokenizer=config.tokenizer, vocab_size=len(tokenizer),
            eos_token_id=int(tokenizer.eos_token_id), seq_len=config.seq_len, token_dtype=dtype.name,
            requested={'train_tokens': config.train_tokens, 'eval_tokens': config.eval_tokens},
            text_key=config.text_key, seed=config.seed, domains=domains, vocab_sha256=vocab_fingerprint(tokenizer),
        )
        manifest.write(staging)
    for name, domain in domains.items():
        for split in SPLITS:
            stats = domain.splits[split]
            log.info('Wrote %s: %d rows, %d tokens, %d documents', out / name / split,
                     stats.rows, stats.tokens, stats.documents)
    log.info('Manifest: %s', out / MANIFEST_NAME)
    return manifest


def _load_tokenizer(name: str) -> Any:
    """Load the tokenizer in this process, with readable errors."""
    try:
        tokenizer = load_prep_tokenizer(name)
    except Exception as err:
        raise ShearError(f'--tokenizer {name!r}: cannot load it: {err}') from err
    if tokenizer.eos_token_id is None:
        raise ShearError(f'--tokenizer {name!r}: has no EOS token, which separates documents')
    return tokenizer
