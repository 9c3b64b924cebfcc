"""`shear prep` killed midway leaves nothing that looks finished; an unknown tokenizer is named."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from composer_plugins.cli.main import main as shear_main
from conftest import REPO_ROOT, subprocess_env


def _prep_args(source, out, tokenizer='byte-level', train_tokens=4_000_000):
    return ['prep', '--domain', f'code={source}', '--tokenizer', tokenizer, '--seq-len', '128',
            '--train-tokens', str(train_tokens), '--eval-tokens', '1280', '--workers', '1', '--out', str(out)]


def test_sigkill_midway_leaves_no_finished_looking_output(tmp_path):
    source = tmp_path / 'code.jsonl'
    line = json.dumps({'text': 'def f(x):\n    return x * 2\n' * 40})
    source.write_text('\n'.join([line] * 6000) + '\n')
    out = tmp_path / 'out'
    proc = subprocess.Popen([sys.executable, '-m', 'composer_plugins.cli.main', *_prep_args(source, out)],
                            cwd=REPO_ROOT, env=subprocess_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob('.out.tmp-*')):
            assert proc.poll() is None, 'prep ended before it started writing'
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.0)  # mid-way through tokenizing / writing shards
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()  # only the hidden staging folder may remain
    assert shear_main(_prep_args(source, out, train_tokens=12_800)) == 0  # a rerun starts clean
    assert (out / 'manifest.json').exists()


def test_unknown_tokenizer_is_one_clear_error(tmp_path, caplog):
    source = tmp_path / 'a.jsonl'
    source.write_text(json.dumps({'text': 'hello world'}) + '\n')
    assert shear_main(_prep_args(source, tmp_path / 'out', tokenizer=str(tmp_path / 'no-such-tokenizer'))) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == 'ERROR']
    assert len(errors) == 1 and "--tokenizer" in errors[0] and 'no-such-tokenizer' in errors[0]
    assert not (tmp_path / 'out').exists()
