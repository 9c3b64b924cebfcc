"""`shear eval`: lm-eval, offline, on a tiny exported model with tasks generated from eval shards.

The harness's bits per byte is checked against our own sum of next-token log-losses over
the same documents, so a wrong data file, lost documents or a mis-set prefix token fail.
"""
from __future__ import annotations

import json
import logging
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from composer_plugins.cli import main as cli_main
from composer_plugins.data.reference_losses import read_token_rows
from composer_plugins.models.causal_lm import ShearCausalLM
from composer_plugins.models.export import export_pruned_model, pruning_record, save_exported
from composer_plugins.tools.evaluation.domain_tasks import split_documents
from composer_plugins.tools.evaluation.harness import task_index
from data_prep.byte_tokenizer import ByteLevelTokenizer
from data_prep.prep import PrepConfig, prepare

EOS = 256
WORDS = ['alpha', 'beta', 'gamma', 'delta', 'def', 'return', 'x', 'y', '42', '(', ')', ':']
TARGET = dict(num_layers=1, hidden_size=48, intermediate_size=96, num_attention_heads=2, num_key_value_heads=1)


@pytest.fixture(scope='module')
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two ASCII domains prepared with the byte-level tokenizer (so bytes == tokens)."""
    root = tmp_path_factory.mktemp('raw')
    rng = random.Random(0)
    for domain, count in (('prose', 40), ('code', 30)):
        docs = [' '.join(rng.choice(WORDS) for _ in range(rng.randint(3, 25))) for _ in range(count)]
        (root / f'{domain}.jsonl').write_text(''.join(json.dumps({'text': d}) + '\n' for d in docs))
    out = tmp_path_factory.mktemp('prep') / 'data'
    prepare(PrepConfig(domains={'prose': [str(root / 'prose.jsonl')], 'code': [str(root / 'code.jsonl')]},
                       tokenizer='byte-level', seq_len=64, train_tokens=128, eval_tokens=320, out=out, workers=1))
    return out


@pytest.fixture(scope='module')
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GQA model pruned by random masks and exported with ``save_exported``."""
    torch.manual_seed(0)
    model = ShearCausalLM('tiny-llama-gqa', pruning={'target': TARGET}).eval()
    with torch.no_grad():
        for param in model.pruner.l0_masks.parameters():
            param.copy_(torch.randn(param.shape) * 2)
    masks = model.pruner.l0_masks.deterministic()
    source, target = model.pruner.source, model.pruner.target
    plain = export_pruned_model(model.model, masks, source, target)
    out = tmp_path_factory.mktemp('model') / 'pruned'
    save_exported(plain, ByteLevelTokenizer(), pruning_record(masks, source, target, 'tiny-llama-gqa'), out)
    return out


def own_bits_per_byte(model_dir: Path, split_dir: Path) -> float:
    """−Σ log p(fragment | EOS) / (ln 2 · bytes) over the EOS-separated fragments of the eval rows."""
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    nll, count = 0.0, 0
    for row in read_token_rows(split_dir, 10_000):
        for fragment in split_documents(row, EOS):
            if not bytes(fragment.tolist()).strip():
                continue
            ids = torch.from_numpy(np.concatenate([[EOS], fragment])).long()[None]
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0, :-1].double()
            nll += torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction='sum').item()
            count += len(fragment)
    return nll / (math.log(2) * count)


def run_eval(*args: str) -> int:
    return cli_main.main(['eval', *args])


def metric(results: dict, task: str, name: str) -> float:
    return results['results'][task][f'{name},none']


def test_domain_tasks_match_own_bits_per_byte(prepared: Path, exported: Path, tmp_path: Path) -> None:
    out = tmp_path / 'eval'
    assert run_eval(str(exported), '--data', str(prepared), '--out', str(out)) == 0
    results = json.loads((out / 'results.json').read_text())
    assert set(results['results']) == {'shear_prose', 'shear_code'}
    for domain in ('prose', 'code'):
        got = metric(results, f'shear_{domain}', 'bits_per_byte')
        want = own_bits_per_byte(exported, prepared / domain / 'eval')
        assert got == pytest.approx(want, rel=1e-4)
        assert metric(results, f'shear_{domain}', 'byte_perplexity') == pytest.approx(2 ** want, rel=1e-4)
    summary = (out / 'summary.md').read_text()
    assert '| shear_code |' in summary and 'bits_per_byte' in summary


def test_user_task_path(prepared: Path, exported: Path, tmp_path: Path) -> None:
    """A task YAML of the user's (a renamed copy of a generated one) runs next to --data's tasks."""
    first = tmp_path / 'first'
    assert run_eval(str(exported), '--data', str(prepared), '--domains', 'code', '--out', str(first)) == 0
    mine = tmp_path / 'my_tasks'
    mine.mkdir()
    config = json.loads((first / 'tasks' / 'shear_code.yaml').read_text())
    config['task'] = 'my_code_copy'
    (mine / 'my_code_copy.yaml').write_text(json.dumps(config))
    second = tmp_path / 'second'
    assert run_eval(str(exported), '--tasks', 'my_code_copy', '--include-path', str(mine), '--out', str(second)) == 0
    ours = json.loads((first / 'results.json').read_text())
    theirs = json.loads((second / 'results.json').read_text())
    assert set(theirs['results']) == {'my_code_copy'}
    assert metric(theirs, 'my_code_copy', 'bits_per_byte') == metric(ours, 'shear_code', 'bits_per_byte')
    # tasks all found in the given folders: lm-eval's ~15,000 built-in tasks are not indexed (9 s on 2 cores)
    assert task_index([mine], ['my_code_copy']).all_tasks == ['my_code_copy']


@pytest.mark.parametrize('make_args, message', [
    (lambda m, d, o: [str(o / 'nowhere'), '--data', str(d), '--out', str(o / 'x')], 'no such model directory'),
    (lambda m, d, o: [str(m), '--out', str(o / 'x')], 'nothing to evaluate'),
    (lambda m, d, o: [str(m), '--tasks', 'no_such_task', '--out', str(o / 'x')], "unknown task(s) ['no_such_task']"),
    (lambda m, d, o: [str(m), '--data', str(d), '--domains', 'poetry', '--out', str(o / 'x')], "['poetry']"),
])
def test_bad_input_is_named(make_args, message: str, prepared: Path, exported: Path, tmp_path: Path,
                            caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        assert run_eval(*make_args(exported, prepared, tmp_path)) == 2
    assert message in caplog.text
