"""lm-eval task YAMLs generated from the eval shards of ``shear prep``: one perplexity task per domain.

For each domain ``d`` the eval rows (``DATA/<d>/eval``) are decoded with the tokenizer
recorded in the prep manifest and split at its EOS token, so every document fragment of
the eval split becomes one lm-eval document. The task is a ``loglikelihood_rolling``
task (like lm-eval's ``wikitext``), so its metrics are

* ``bits_per_byte``  = −Σ_docs log p(doc) / (ln 2 · Σ_docs bytes(doc))
* ``byte_perplexity`` = 2 ** bits_per_byte
* ``word_perplexity`` = exp(−Σ_docs log p(doc) / Σ_docs words(doc))

which, unlike a token-level loss, compare models with different tokenizers.

Layout written under ``TASK_DIR``::

    TASK_DIR/<prefix><d>.yaml   task config (dataset_path: json, local data file)
    TASK_DIR/<prefix><d>.jsonl  one {"text": ...} per document fragment
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from composer_plugins.data.reference_losses import read_token_rows, resolve_domains
from composer_plugins.errors import ShearError

log = logging.getLogger(__name__)

PERPLEXITY_AGGREGATIONS = {'word_perplexity': 'weighted_perplexity', 'byte_perplexity': 'weighted_perplexity',
                           'bits_per_byte': 'bits_per_byte'}
"""lm-eval's own defaults for its loglikelihood_rolling metrics (``lm_eval.api.task``), written into each task."""

TASK_PREFIX = 'shear_'


@dataclass(frozen=True)
class DomainTask:
    """One generated task.

    Attributes:
        name: lm-eval task name (``shear_<domain>``).
        domain: The prep domain it measures.
        yaml_path: The task config.
        documents: Number of documents in its data file.
    """
    name: str
    domain: str
    yaml_path: Path
    documents: int


def split_documents(row: np.ndarray, eos_id: int) -> list[np.ndarray]:
    """The non-empty runs of ``row`` between EOS tokens."""
    cuts = np.flatnonzero(row == eos_id)
    pieces = np.split(row, cuts)
    fragments = [piece[1:] if i > 0 else piece for i, piece in enumerate(pieces)]  # drop the EOS itself
    return [fragment for fragment in fragments if len(fragment)]


def task_yaml(name: str, data_file: Path) -> str:
    """The lm-eval config of a rolling-loglikelihood task over a local jsonl file."""
    config = {
        'task': name,
        'dataset_path': 'json',
        'dataset_kwargs': {'data_files': {'test': str(data_file)}},
        'test_split': 'test',
        'output_type': 'loglikelihood_rolling',
        'doc_to_text': '',
        'doc_to_target': '{{text}}',
        'metric_list': [  # aggregation and direction written out: lm-eval warns 6 times a task otherwise
            {'metric': metric, 'aggregation': aggregation, 'higher_is_better': False}
            for metric, aggregation in PERPLEXITY_AGGREGATIONS.items()],
        'metadata': {'version': 1.0},
    }
    return json.dumps(config, indent=2) + '\n'  # JSON is valid YAML, and needs no yaml dependency


def write_domain_tasks(
    data_dir: str | Path,
    task_dir: str | Path,
    domains: Optional[Sequence[str]] = None,
    max_rows: int = 1_000_000,
) -> list[DomainTask]:
    """Generate one perplexity task per domain of a prepared folder.

    Args:
        data_dir: Output of ``shear prep`` (needs ``manifest.json`` for the tokenizer).
        task_dir: Where the task YAMLs and data files go (created).
        domains: The domains to include (default: all of the manifest's).
        max_rows: At most this many eval rows per domain.

    Raises:
        ShearError: No manifest, a domain without eval shards, or a domain whose eval rows
            decode to no text.
    """
    from data_prep.manifest import read_manifest
    from data_prep.tokenize import load_prep_tokenizer

    manifest = read_manifest(data_dir)
    chosen = resolve_domains(data_dir, 'eval', domains)
    try:
        tokenizer = load_prep_tokenizer(manifest['tokenizer'])
    except Exception as err:
        raise ShearError(f'{Path(data_dir) / "manifest.json"}: cannot load tokenizer '
                         f'{manifest.get("tokenizer")!r}: {err}') from err
    eos_id = int(manifest['eos_token_id'])
    out = Path(task_dir)
    out.mkdir(parents=True, exist_ok=True)
    tasks = []
    for domain in chosen:
        rows = read_token_rows(Path(data_dir) / domain / 'eval', max_rows)
        texts = [tokenizer.decode(fragment.tolist()) for row in rows for fragment in split_documents(row, eos_id)]
        texts = [text for text in texts if text.strip()]
        if not texts:
            raise ShearError(f'{Path(data_dir) / domain / "eval"}: the eval rows decode to no text')
        name = f'{TASK_PREFIX}{domain}'
        data_file = (out / f'{name}.jsonl').absolute()
        with data_file.open('w', encoding='utf-8') as f:
            for text in texts:
                f.write(json.dumps({'text': text}, ensure_ascii=False) + '\n')
        yaml_path = out / f'{name}.yaml'
        yaml_path.write_text(task_yaml(name, data_file), encoding='utf-8')
        tasks.append(DomainTask(name=name, domain=domain, yaml_path=yaml_path, documents=len(texts)))
        log.info('Task %s: %d documents from %d eval rows of %s', name, len(texts), len(rows), domain)
    return tasks
