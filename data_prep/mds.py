"""Write fixed-length token rows as mosaicml-streaming MDS shards (column ``tokens``)."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from streaming import MDSWriter

log = logging.getLogger(__name__)

TOKENS_COLUMN = 'tokens'


def token_dtype(vocab_size: int) -> np.dtype:
    """Smallest unsigned dtype that holds every token id of the vocabulary."""
    if vocab_size <= np.iinfo(np.uint16).max + 1:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


def pack_documents(documents: Iterable[list[int]], seq_len: int, eos_id: int) -> Iterator[np.ndarray]:
    """Concatenate documents with EOS after each and cut the stream into rows of ``seq_len``.

    The final partial row is dropped, so every row has exactly ``seq_len`` tokens.
    """
    buffer: list[int] = []
    for doc in documents:
        if not doc:
            continue
        buffer.extend(doc)
        buffer.append(eos_id)
        while len(buffer) >= seq_len:
            yield np.asarray(buffer[:seq_len], dtype=np.int64)
            del buffer[:seq_len]


def write_token_rows(out_dir: str | Path, rows: Iterable[np.ndarray], vocab_size: int, size_limit: str = '8mb') -> int:
    """Write ``rows`` into MDS shards under ``out_dir``; returns the number of rows written."""
    dtype = token_dtype(vocab_size)
    count = 0
    with MDSWriter(out=str(out_dir), columns={TOKENS_COLUMN: f'ndarray:{dtype.name}'}, size_limit=size_limit) as writer:
        for row in rows:
            writer.write({TOKENS_COLUMN: np.asarray(row).astype(dtype)})
            count += 1
    log.info('Wrote %d rows to %s', count, out_dir)
    return count


def read_rows_in_place(split_dir: str | Path, max_rows: int) -> list[np.ndarray]:
    """The first ``max_rows`` rows (column ``tokens``) of the local MDS folder ``split_dir``, in order.

    Reads the shards listed in ``index.json`` directly, with no ``StreamingDataset``: no
    shared memory is created or cleaned, so it is safe inside a training process whose own
    datasets are live. Compressed shards are not supported (``shear prep`` writes raw ones).

    Raises:
        ShearError: a missing or unreadable index, or compressed shards.
    """
    import json

    from streaming.base.format import reader_from_json

    from data_prep.errors import ShearError

    index_path = Path(split_dir) / 'index.json'
    try:
        shards = json.loads(index_path.read_text())['shards']
    except (OSError, ValueError, KeyError) as err:
        raise ShearError(f'{index_path}: cannot read the MDS index: {err}') from err
    rows: list[np.ndarray] = []
    for info in shards:
        if info.get('compression'):
            raise ShearError(f'{index_path}: compressed shards ({info["compression"]}) cannot be read in place')
        shard = reader_from_json(str(split_dir), None, info)
        for index in range(shard.samples):
            if len(rows) >= max_rows:
                return rows
            rows.append(np.asarray(shard.get_item(index)[TOKENS_COLUMN]).astype(np.int64))
    return rows
