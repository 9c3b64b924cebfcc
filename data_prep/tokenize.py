"""Tokenize chunks of documents in a process pool, results in input order.

Each worker loads the tokenizer once (pool initializer). Chunks are submitted a few at
a time and collected first-in first-out, so the output order, and the output itself,
do not depend on the number of workers; at most ``window`` chunks are read ahead of the
consumer (``Pool.imap`` would read the whole input ahead).
"""
from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.pool import AsyncResult
from typing import Optional

import numpy as np

from data_prep.sources import DocumentChunk, SkipCounts

log = logging.getLogger(__name__)

_WORKER_TOKENIZER = None  # set in each pool worker by _init_worker


@dataclass
class TokenizedChunk:
    """The token ids of one :class:`DocumentChunk`.

    Attributes:
        documents: Token ids per document, in input order (possibly empty lists).
        skipped: The chunk's skip counts, carried over unchanged.
    """
    documents: list[list[int]]
    skipped: SkipCounts


def load_prep_tokenizer(name: str):
    """Load a tokenizer for whole-document encoding (no model-length warnings).

    Args:
        name: ``byte-level``, a local tokenizer directory or a hub id.

    Returns:
        The tokenizer.
    """
    from data_prep.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(name)
    tokenizer.model_max_length = int(1e30)  # documents are packed later; long ones are fine
    return tokenizer


def encode_texts(tokenizer, texts: list[str]) -> list[np.ndarray]:
    """Token ids (no special tokens) of each text, as compact arrays."""
    if not texts:
        return []
    encoded = tokenizer(texts, add_special_tokens=False, return_attention_mask=False)['input_ids']
    return [np.asarray(ids, dtype=np.uint32) for ids in encoded]


def _init_worker(tokenizer_name: str) -> None:
    global _WORKER_TOKENIZER
    os.environ['TOKENIZERS_PARALLELISM'] = 'false'  # the pool is the parallelism
    _WORKER_TOKENIZER = load_prep_tokenizer(tokenizer_name)


def _encode_in_worker(texts: list[str]) -> list[np.ndarray]:
    return encode_texts(_WORKER_TOKENIZER, texts)


def _to_chunk(ids: list[np.ndarray], skipped: SkipCounts) -> TokenizedChunk:
    return TokenizedChunk([array.tolist() for array in ids], skipped)


class TokenizerPool:
    """Tokenize :class:`DocumentChunk` streams, in order, with one set of worker processes.

    Use as a context manager; the pool (if any) is started once and serves every domain.
    With one worker, chunks are tokenized in this process.

    Args:
        tokenizer_name: Name each worker loads with :func:`load_prep_tokenizer`.
        workers: Worker processes; 1 tokenizes in this process.
        tokenizer: An already loaded tokenizer, used when ``workers == 1``.
        window: Chunks in flight at most (default ``2 * workers``).
    """

    def __init__(self, tokenizer_name: str, workers: int, tokenizer=None, window: Optional[int] = None) -> None:
        if workers < 1:
            raise ValueError(f'workers must be >= 1, got {workers}')
        self.tokenizer_name = tokenizer_name
        self.workers = workers
        self.window = window or 2 * workers
        self._tokenizer = tokenizer
        self._pool = None

    def __enter__(self) -> TokenizerPool:
        if self.workers == 1:
            self._tokenizer = self._tokenizer or load_prep_tokenizer(self.tokenizer_name)
        else:
            # spawn: workers start clean (no inherited threads of torch or the tokenizers library).
            context = multiprocessing.get_context('spawn')
            log.info('Starting %d tokenizer processes', self.workers)
            self._pool = context.Pool(self.workers, initializer=_init_worker, initargs=(self.tokenizer_name,))
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def tokenize(self, chunks: Iterable[DocumentChunk]) -> Iterator[TokenizedChunk]:
        """Tokenize ``chunks`` (read lazily) and yield one :class:`TokenizedChunk` each, in order.

        At most ``window`` chunks are read ahead of the consumer; chunks still in flight
        when the consumer stops are discarded.
        """
        if self._pool is None:
            if self._tokenizer is None:
                raise RuntimeError('TokenizerPool used outside its with block')
            for chunk in chunks:
                yield _to_chunk(encode_texts(self._tokenizer, chunk.texts), chunk.skipped)
            return
        pending: deque[tuple[AsyncResult, SkipCounts]] = deque()
        for chunk in chunks:
            pending.append((self._pool.apply_async(_encode_in_worker, (chunk.texts,)), chunk.skipped))
            if len(pending) >= self.window:
                result, skipped = pending.popleft()
                yield _to_chunk(result.get(), skipped)
        while pending:
            result, skipped = pending.popleft()
            yield _to_chunk(result.get(), skipped)
