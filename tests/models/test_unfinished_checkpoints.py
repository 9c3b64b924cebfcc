"""A kill between writing a checkpoint and pointing ``latest`` at it does not block autoresume."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from composer_plugins.models.unfinished_checkpoints import set_aside_unfinished_checkpoints
from conftest import TINY_YAML


def _touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).write_bytes(b'x')


def test_only_checkpoints_newer_than_latest_of_the_runs_layout_are_set_aside(tmp_path):
    _touch(tmp_path, 'ep0-ba10-rank0.pt', 'ep0-ba20-rank0.pt', 'ep0-ba30-rank1.pt', 'notes-ba99.txt')
    for name in ('ep0-ba4', 'ep0-ba8'):
        (tmp_path / name).mkdir()
    os.symlink('ep0-ba10-rank0.pt', tmp_path / 'latest-rank0.pt')
    os.symlink('ep0-ba4', tmp_path / 'latest-sharded-rank0')

    moved = set_aside_unfinished_checkpoints(str(tmp_path), sharded=False)
    assert [p.name for p in moved] == ['ep0-ba20-rank0.pt.unfinished', 'ep0-ba30-rank1.pt.unfinished']
    assert (tmp_path / 'ep0-ba10-rank0.pt').is_file() and (tmp_path / 'ep0-ba8').is_dir()  # other layout untouched
    assert [p.name for p in set_aside_unfinished_checkpoints(str(tmp_path), sharded=True)] == ['ep0-ba8.unfinished']
    assert (tmp_path / 'ep0-ba4').is_dir() and (tmp_path / 'notes-ba99.txt').is_file()


def test_a_folder_without_latest_is_left_alone(tmp_path):
    _touch(tmp_path, 'ep0-ba10-rank0.pt')
    assert set_aside_unfinished_checkpoints(str(tmp_path), sharded=False) == []
    assert set_aside_unfinished_checkpoints(str(tmp_path / 'missing'), sharded=False) == []
    assert (tmp_path / 'ep0-ba10-rank0.pt').is_file()


def test_autoresume_continues_from_latest_past_a_checkpoint_it_never_pointed_at(corpus_dir, tmp_path):
    """Both runs in this process (a child's start-up would double the test's time and check nothing more)."""
    from composer.loggers import InMemoryLogger

    from composer_plugins.config.load import load_run_config
    from composer_plugins.train_entry import run

    save = tmp_path / 'ckpt'
    args = [f'variables.data_dir={corpus_dir}', f'variables.run_dir={tmp_path}', f'save_folder={save}',
            'run_name=cut', 'autoresume=true', 'save_interval=5ba', 'eval_interval=1000ba', 'max_duration=10ba',
            'save_num_checkpoints_to_keep=-1', 'loggers={inmemory: {}}']
    run(load_run_config(str(TINY_YAML), args))
    # as if killed after writing ep0-ba10 but before pointing latest at it
    os.remove(save / 'latest-rank0.pt')
    os.symlink('ep0-ba5-rank0.pt', save / 'latest-rank0.pt')
    unfinished = (save / 'ep0-ba10-rank0.pt').read_bytes()

    warnings: list[logging.LogRecord] = []  # llm-foundry's logging.basicConfig(force=True) drops caplog's handler
    handler, logger = logging.Handler(logging.WARNING), logging.getLogger(set_aside_unfinished_checkpoints.__module__)
    handler.emit = warnings.append
    logger.addHandler(handler)
    try:
        resumed = run(load_run_config(str(TINY_YAML), args))
    finally:
        logger.removeHandler(handler)
    memory = next(d for d in resumed.logger.destinations if isinstance(d, InMemoryLogger))
    assert [int(t.batch) for t, _ in memory.data['loss/train/total']] == [5, 6, 7, 8, 9]  # batches 6..10 trained
    assert (save / 'ep0-ba10-rank0.pt.unfinished').read_bytes() == unfinished  # set aside, not deleted
    assert os.readlink(save / 'latest-rank0.pt') == 'ep0-ba10-rank0.pt'
    assert 'set aside as ep0-ba10-rank0.pt.unfinished' in ' '.join(r.getMessage() for r in warnings)
