"""The console of a run (:mod:`composer_plugins.console_bar`): Composer's progress bar with its ETA when stderr is
a terminal, the metrics blocks and log lines written above it, and today's console everywhere else."""
from __future__ import annotations

import fcntl
import io
import logging
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time

import pytest

from composer_plugins import console_bar
from composer_plugins.config.foundry import to_foundry_config
from composer_plugins.config.load import load_run_config
from composer_plugins.console_bar import (
    BarSafeStream,
    route_log_handlers,
    stderr_is_terminal,
    unroute_log_handlers,
    wants_progress_bar,
    with_progress_bar,
)
from conftest import REPO_ROOT, TINY_YAML, subprocess_env, train_command

BAR = re.compile(r'\d+%\|[^|\n]*\| *\d+/\d+ \[')
"""A drawn bar: ``35%|█████     | 7/20 [``."""
ETA = re.compile(r'\| *\d+/20 \[\d\d:\d\d<\d\d:\d\d, +\d[\d.]*(?:ba/s|s/ba)')
"""The train bar's ``elapsed<remaining, rate``."""
CONSOLE_LINE = re.compile(r'\[batch=\d+/\d+\]|\[Eval batch=|\d{4}-\d\d-\d\d [\d:,]+:? .*INFO|\*{30}')
"""A metrics block's first line, an evaluation line, a log line, Composer's config block."""


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run whose stderr is a terminal, on local rank 0, with ``SHEAR_PROGRESS_BAR`` unset."""
    monkeypatch.setattr(console_bar, 'stderr_is_terminal', lambda: True)
    monkeypatch.delenv(console_bar.ENV_VAR, raising=False)
    monkeypatch.delenv('LOCAL_RANK', raising=False)


def test_the_bar_is_for_a_terminal_on_local_rank_0_unless_turned_off():
    assert wants_progress_bar({}, environ={}, terminal=True)
    assert not wants_progress_bar({}, environ={}, terminal=False)
    assert not wants_progress_bar({}, environ={'SHEAR_PROGRESS_BAR': '0'}, terminal=True)
    assert wants_progress_bar({}, environ={'SHEAR_PROGRESS_BAR': '1'}, terminal=True)
    assert not wants_progress_bar({}, environ={'LOCAL_RANK': '1'}, terminal=True)
    assert wants_progress_bar({'progress_bar': None}, environ={}, terminal=True)  # null: as if unset


def test_a_written_progress_bar_wins():
    assert not wants_progress_bar({'progress_bar': False}, environ={}, terminal=True)
    assert wants_progress_bar({'progress_bar': True}, environ={'SHEAR_PROGRESS_BAR': '0'}, terminal=False)


def test_stderr_is_terminal_on_a_pty_only(monkeypatch: pytest.MonkeyPatch):
    master, slave = pty.openpty()
    read_end, write_end = os.pipe()
    try:
        with open(slave, 'w', closefd=False) as tty, open(write_end, 'w', closefd=False) as pipe:
            monkeypatch.setattr('sys.stderr', tty)
            assert not stderr_is_terminal()  # a pty of 0 columns: tqdm would draw an empty bar
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 40, 160, 0, 0))
            assert stderr_is_terminal()
            monkeypatch.setattr('sys.stderr', pipe)
            assert not stderr_is_terminal()
        monkeypatch.setattr('sys.stderr', io.StringIO())  # no fileno
        assert not stderr_is_terminal()
        monkeypatch.setattr('sys.stderr', None)
        assert not stderr_is_terminal()
    finally:
        for fd in (master, slave, read_end, write_end):
            os.close(fd)


def test_with_a_bar_the_metrics_blocks_move_to_the_console_bar_logger(corpus_dir, terminal):
    cfg = load_run_config(str(TINY_YAML), [f'variables.data_dir={corpus_dir}', 'save_folder=null'])
    handed = to_foundry_config(with_progress_bar(cfg))
    assert handed['progress_bar'] is True and handed['log_to_console'] is False
    assert handed['loggers']['console_bar'] == {'log_interval': '10ba', 'metrics': True}
    assert 'jsonl' in handed['loggers']  # metrics.jsonl as before
    quiet = load_run_config(str(TINY_YAML), [f'variables.data_dir={corpus_dir}', 'save_folder=null',
                                             'log_to_console=false'])
    assert to_foundry_config(with_progress_bar(quiet))['loggers']['console_bar'] == {'log_interval': '10ba',
                                                                                      'metrics': False}


def test_without_a_bar_the_config_is_handed_on_untouched(corpus_dir, terminal, monkeypatch: pytest.MonkeyPatch):
    written_false = load_run_config(str(TINY_YAML), [f'variables.data_dir={corpus_dir}', 'save_folder=null',
                                                     'progress_bar=false'])
    assert to_foundry_config(with_progress_bar(written_false)) == to_foundry_config(written_false)
    monkeypatch.setenv(console_bar.ENV_VAR, '0')
    cfg = load_run_config(str(TINY_YAML), [f'variables.data_dir={corpus_dir}', 'save_folder=null'])
    handed = to_foundry_config(with_progress_bar(cfg))
    assert handed == to_foundry_config(cfg)
    assert 'progress_bar' not in handed and handed['log_to_console'] is True  # llm-foundry's default: no bar


def test_log_handlers_write_through_tqdm_while_routed(monkeypatch: pytest.MonkeyPatch):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    written = []
    monkeypatch.setattr(console_bar.tqdm.auto.tqdm, 'write',
                        classmethod(lambda cls, s, file=None, end='\n': written.append(s + end) or file.write(s + end)))
    root.addHandler(handler)
    try:
        routed = route_log_handlers(stream)
        assert routed == [handler] and isinstance(handler.stream, BarSafeStream)
        assert route_log_handlers(stream) == []  # not wrapped twice
        logging.getLogger('composer_plugins.test').warning('above the bar')
        unroute_log_handlers(routed)
        assert handler.stream is stream
        logging.getLogger('composer_plugins.test').warning('after the run')
    finally:
        root.removeHandler(handler)
    assert written == ['above the bar\n']
    assert stream.getvalue() == 'above the bar\nafter the run\n'


def run_in_pty(command: list[str], env: dict[str, str], timeout: float) -> str:
    """Run ``command`` with stdout and stderr on a 40x160 pseudo-terminal; everything the terminal received."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 40, 160, 0, 0))
    proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    poller = select.poll()  # not select.select: a long test session holds descriptors past its 1024 limit
    poller.register(master, select.POLLIN)
    try:
        while time.monotonic() < deadline:
            if not poller.poll(500):
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the run closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    output = b''.join(chunks).decode('utf-8', errors='replace')
    assert proc.returncode == 0, output[-6000:]
    return output


def render(raw: str) -> list[str]:
    """The lines a terminal shows for ``raw`` (text, ``\\r``, ``\\n``, cursor up; other escapes ignored)."""
    lines, row, col = [''], 0, 0
    for token in re.split(r'(\x1b\[\d*[A-Za-z]|\r|\n)', raw):
        if token == '\n':
            row += 1
            if row == len(lines):
                lines.append('')
        elif token == '\r':
            col = 0
        elif token.startswith('\x1b['):
            if token.endswith('A'):
                row = max(0, row - int(token[2:-1] or 1))
        elif token:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + token + line[col + len(token):]
            col += len(token)
    return [line.rstrip() for line in lines]


def test_a_run_in_a_terminal_draws_the_bar_and_writes_every_line_above_it(corpus_dir, tmp_path):
    command = train_command(f'variables.data_dir={corpus_dir}', f'variables.run_dir={tmp_path}', 'max_duration=20ba',
                            'eval_interval=1000ba', 'eval_subset_num_batches=2', 'save_folder=null', 'loggers=null',
                            'global_train_batch_size=2', 'device_train_microbatch_size=2')
    raw = run_in_pty(command, subprocess_env(unset=(console_bar.ENV_VAR, 'LOCAL_RANK')), timeout=240)
    assert ETA.search(raw), raw[-3000:]  # the bar, with elapsed<remaining and the rate
    assert 'loss/train/total=' in raw
    screen = render(raw)
    assert [line for line in screen if line.startswith('[batch=')] == [
        '[batch=1/20]:', '[batch=10/20]:', '[batch=20/20]:']  # console_log_interval: 10ba
    assert any(BAR.search(line) and '20/20' in line for line in screen)
    assert 'Train loss/train/total' in raw and 'INFO: llmfoundry.command_utils.train: Done.' in raw
    for line in raw.split('\n'):  # as written: no block or log line follows a bar on its line
        assert not (BAR.search(line) and CONSOLE_LINE.search(line)), repr(line)
    for line in screen:  # as shown: every block and log line starts its own line, none shares one with a bar
        found = CONSOLE_LINE.search(line)
        assert not found or (found.start() == 0 and not BAR.search(line)), repr(line)
