"""The README's "Your own model and data" walkthrough, run exactly as written, from a folder outside the checkout.

The test builds what a user brings: ``models/my_llama`` (a tiny Llama, 4 layers, 8 query heads in
2 KV groups, no tokenizer files: the byte-level tokenizer) and ``raw/web.jsonl`` / ``raw/code.jsonl``
(the standard library's docstrings and source). Then it runs the README's bash block as one
script (``set -euo pipefail``) and checks what each stage leaves.
"""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]
LAUNCHER_VARIABLES = ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'LOCAL_WORLD_SIZE', 'NODE_RANK', 'MASTER_ADDR',
                      'MASTER_PORT')


def readme_walkthrough() -> str:
    """The first ```bash block under ``## Your own model and data`` in README.md."""
    text = (REPO_ROOT / 'README.md').read_text(encoding='utf-8')
    section = text.split('## Your own model and data', 1)[1].split('\n## ', 1)[0]
    block = re.search(r'```bash\n(.*?)```', section, re.S)
    assert block, 'README: no bash block in "Your own model and data"'
    return block.group(1)


def write_user_inputs(root: Path) -> None:
    """``models/my_llama`` and ``raw/{web,code}.jsonl`` (about 200 KB of text each)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                         num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=512,
                         eos_token_id=256, pad_token_id=257, bos_token_id=None, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(root / 'models' / 'my_llama')
    sources = sorted(Path(ast.__file__).parent.glob('*.py'))
    web, code = [], []
    for path in sources:
        source = path.read_text(encoding='utf-8', errors='replace')
        code.append({'text': source[:4000]})
        doc = ast.get_docstring(ast.parse(source)) if len(source) < 400_000 else None
        if doc:
            web.append({'text': doc})
    (root / 'raw').mkdir()
    for name, rows in (('web', web), ('code', code)):
        (root / 'raw' / f'{name}.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows), encoding='utf-8')


def test_readme_own_model_walkthrough_runs_as_written(tmp_path):
    write_user_inputs(tmp_path)
    script = tmp_path / 'walkthrough.sh'
    script.write_text('set -euo pipefail\n' + readme_walkthrough(), encoding='utf-8')
    env = subprocess_env(unset=LAUNCHER_VARIABLES)  # a user's shell, not the rank of an earlier test's process
    env['PATH'] = f'{Path(sys.executable).parent}:{env["PATH"]}'  # `shear` of this environment
    proc = subprocess.run(['bash', str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1100)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert set(json.loads((tmp_path / 'data' / 'mix' / 'manifest.json').read_text())['domains']) == {'web', 'code'}
    assert 'ref_losses' in (tmp_path / 'refs.yaml').read_text()
    exported = json.loads((tmp_path / 'runs' / 'prune' / 'exported' / 'config.json').read_text())
    assert (exported['num_hidden_layers'], exported['num_attention_heads'], exported['num_key_value_heads'],
            exported['hidden_size'], exported['intermediate_size']) == (2, 2, 1, 48, 96)
    assert (tmp_path / 'runs' / 'continue' / 'hf' / 'huggingface' / 'ba30' / 'config.json').is_file()
    assert (tmp_path / 'runs' / 'eval' / 'results.json').is_file()
    report = (tmp_path / 'runs' / 'report' / 'report.md').read_text()
    assert '| continue |' in report and '–' not in report.split('| continue |', 1)[1].split('\n', 1)[0]
