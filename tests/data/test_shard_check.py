"""Shards are checked against their index before training; a row that still fails to decode is named."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from streaming import MDSWriter

from composer_plugins.config.load import load_run_config
from composer_plugins.data.shard_check import check_shards
from composer_plugins.errors import ConfigError, ShearError
from conftest import MIXTURE_YAML, TINY_YAML


def _copy(corpus: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(corpus, tmp_path / 'data'))


def _cut(shard: Path, n: int) -> None:
    shard.write_bytes(shard.read_bytes()[:-n])


def test_truncated_shard_is_named_at_config_load(corpus_dir: Path, tmp_path: Path) -> None:
    data = _copy(corpus_dir, tmp_path)
    shard = sorted((data / 'train').glob('shard.*.mds'))[-1]
    size = shard.stat().st_size
    _cut(shard, 100)
    with pytest.raises(ConfigError, match=rf"^train_loader\.dataset\.local: shard '{shard}' has {size - 100} bytes, "
                                          rf'but its index\.json records {size}'):
        load_run_config(str(TINY_YAML), [f'variables.data_dir={data}'])


def test_missing_shard_and_unreadable_index_are_named(corpus_dir: Path, tmp_path: Path) -> None:
    data = _copy(corpus_dir, tmp_path)
    shard = sorted((data / 'eval').glob('shard.*.mds'))[0]
    shard.unlink()
    with pytest.raises(ConfigError, match=rf"shard '{shard}', listed in .*index.json', is missing"):
        check_shards(str(data / 'eval'), 'eval')
    (data / 'eval' / 'index.json').write_text('{"shards": ')
    with pytest.raises(ConfigError, match=r'^eval: cannot read the MDS index'):
        check_shards(str(data / 'eval'), 'eval')


def test_hashes_are_checked_where_the_index_has_them(tmp_path: Path) -> None:
    out = tmp_path / 'hashed'
    with MDSWriter(out=str(out), columns={'tokens': 'ndarray:uint16'}, hashes=['sha1', 'xxh64']) as writer:
        for row in range(20):
            writer.write({'tokens': np.full(16, row, dtype=np.uint16)})
    assert check_shards(str(out), 'k') == 1
    shard = out / 'shard.00000.mds'
    raw = bytearray(shard.read_bytes())
    raw[-5] ^= 0xFF  # same size, one byte flipped
    shard.write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match=rf"^k: shard '{shard}' fails its (sha1|xxh64) check"):
        check_shards(str(out), 'k')


def test_mixture_domain_shard_is_named_and_a_bad_row_names_shard_and_row(mixture_dir: Path, tmp_path: Path) -> None:
    data = _copy(mixture_dir, tmp_path)
    split = data / 'beta' / 'train'
    shard = sorted(split.glob('shard.*.mds'))[-1]
    _cut(shard, 100)
    overrides = [f'variables.data_dir={data}']
    with pytest.raises(ConfigError, match=rf"^train_loader\.dataset\.domains\[beta\]: shard '{shard}' has"):
        load_run_config(str(MIXTURE_YAML), overrides)

    # An index that agrees with the cut file: the check passes, the last row cannot be decoded.
    index = json.loads((split / 'index.json').read_text())
    index['shards'][-1]['raw_data']['bytes'] = shard.stat().st_size
    (split / 'index.json').write_text(json.dumps(index))
    load_run_config(str(MIXTURE_YAML), overrides)
    from composer_plugins.data.mixture_loader import DomainMixtureDataset

    dataset = DomainMixtureDataset(['alpha', 'beta'], str(data), 'train', [0.5, 0.5], 8, 0, 128)
    last = int(dataset.domain_sizes[1]) - 1
    assert dataset[(1, 0)]['input_ids'].numel() == 128
    row_in_shard = last - sum(s['samples'] for s in index['shards'][:-1])
    with pytest.raises(ShearError, match=rf"domain 'beta': shard '{shard}' row {row_in_shard} cannot be read"):
        dataset[(1, last)]
