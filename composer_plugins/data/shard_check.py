"""Checks of local MDS shards before training, and a readable error for a row that fails to decode.

:func:`check_shards` reads a split folder's ``index.json`` and checks every shard it lists
against the size the writer recorded (``raw_data.bytes``, ``zip_data.bytes``), and against the
writer's hashes where the index has them (``MDSWriter(hashes=[...])``). Sizes cost one ``stat``
a shard; hashes read every byte, so only datasets written with hashes pay for them. No torch or
streaming import: it runs at config load, before anything is built.

:func:`describe_row` names the shard file and row of a sample of a ``StreamingDataset``, for
the error a reader raises when a row still fails to decode.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from typing import Any, Optional

from composer_plugins.errors import ConfigError


def _digest(algo: str, path: str) -> str | None:
    """Hex digest of the file with ``algo`` (hashlib's or xxhash's names), or None if neither knows it."""
    if algo in hashlib.algorithms_available:
        hasher = hashlib.new(algo)
    else:
        try:
            import xxhash
        except ImportError:
            return None
        factory = getattr(xxhash, algo, None)
        if factory is None:
            return None
        hasher = factory()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            hasher.update(block)
    return hasher.hexdigest()


def _check_file(split_dir: str, info: dict[str, Any], key: str) -> bool:
    """Checks one of a shard's files if it is present; returns whether it was."""
    path = os.path.join(split_dir, info['basename'])
    if not os.path.isfile(path):
        return False
    size, expected = os.path.getsize(path), info.get('bytes')
    if expected is not None and size != expected:
        raise ConfigError(f'{key}: shard {path!r} has {size} bytes, but its index.json records {expected} '
                          '(truncated or overwritten); prepare the data again')
    for algo, recorded in (info.get('hashes') or {}).items():
        actual = _digest(algo, path)
        if actual is not None and actual != recorded:
            raise ConfigError(f'{key}: shard {path!r} fails its {algo} check (index.json records {recorded}, '
                              f'the file has {actual}); prepare the data again')
    return True


def check_shards(split_dir: str, key: str) -> int:
    """Checks every shard ``<split_dir>/index.json`` lists; returns how many.

    Args:
        split_dir: a local MDS folder (one split of one domain).
        key: the config key the folder came from, for messages.

    Raises:
        ConfigError: an unreadable index, a listed shard missing, a size or a hash that
            differs from the index's; each names the file.
    """
    index_path = os.path.join(split_dir, 'index.json')
    try:
        with open(index_path, encoding='utf-8') as f:
            shards = json.load(f)['shards']
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f'{key}: cannot read the MDS index {index_path!r}: {err}') from None
    for shard in shards:
        raw, zipped = shard.get('raw_data'), shard.get('zip_data')
        present = [_check_file(split_dir, info, key) for info in (raw, zipped) if info]
        if not any(present):
            name = (raw or zipped or {}).get('basename', '?')
            raise ConfigError(f'{key}: shard {os.path.join(split_dir, name)!r}, listed in {index_path!r}, is missing')
    return len(shards)


SHAPE_FORMATS = ('B', 'H', 'I', 'Q')
"""mosaicml-streaming's ``NDArray`` shape dtypes (uint8 ... uint64) by their code, the low two bits of the
shape byte, as :mod:`struct` formats (no numpy: config load imports none)."""


def first_row_tokens(split_dir: str) -> Optional[int]:
    """The token count of the first row of ``<split_dir>``'s first shard, or None where it cannot be read
    without decompressing (a zipped-only shard) or is not one ``tokens`` ndarray column of dynamic shape.

    An MDS shard starts with ``n`` (uint32) and ``n + 1`` uint32 sample offsets; a sample of one
    variable-size column is its size (uint32), then mosaicml-streaming's ``NDArray`` encoding with a
    static dtype: one byte ``ndim << 2 | shape dtype``, the shape, the values.
    """
    try:
        with open(os.path.join(split_dir, 'index.json'), encoding='utf-8') as f:
            shard = json.load(f)['shards'][0]
        encoding, raw = shard['column_encodings'][0], shard.get('raw_data')
        if shard.get('column_names') != ['tokens'] or encoding.count(':') != 1 or not raw:
            return None  # not ours, or a static shape ('ndarray:uint16:256')
        with open(os.path.join(split_dir, raw['basename']), 'rb') as f:
            count, start = struct.unpack('<II', f.read(8))
            f.seek(start + 4)  # past the column size
            shape_byte = f.read(1)[0]
            ndim, form = shape_byte >> 2, '<' + SHAPE_FORMATS[shape_byte & 3] * (shape_byte >> 2)
            shape = struct.unpack(form, f.read(struct.calcsize(form)))
    except (OSError, ValueError, KeyError, IndexError, TypeError, struct.error):
        return None
    return math.prod(shape) if count and ndim else None


def check_row_length(split_dir: str, max_seq_len: int, key: str, max_seq_len_key: str) -> None:
    """Rows at least ``max_seq_len`` tokens long: a shorter row would silently train a shorter context.

    Raises:
        ConfigError: naming ``max_seq_len_key``, the folder and the rows' length.
    """
    row = first_row_tokens(split_dir)
    if row is not None and max_seq_len > row:
        raise ConfigError(f'{max_seq_len_key}: {max_seq_len} is longer than the rows of {key} {split_dir!r} '
                          f'({row} tokens): every sample would be {row} tokens; prepare the data with '
                          f'--seq-len {max_seq_len} or set max_seq_len <= {row}')


def describe_row(dataset: Any, index: int) -> str:
    """``shard '<file>' row <r>`` of the global sample ``index`` of a local ``StreamingDataset``."""
    try:
        shard_id, row = dataset.spanner[index]
        shard = dataset.shards[shard_id]
        stream = dataset.streams[dataset.stream_per_shard[shard_id]]
        name = os.path.join(stream.local, stream.split or '', shard.raw_data.basename)
    except Exception:  # noqa: BLE001 -- only used to word an error that is already being raised
        return f'sample {index}'
    return f'shard {name!r} row {row}'
