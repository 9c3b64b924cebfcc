"""The embedded corpus: every domain is assembled from what is installed, and a wrong domain is named."""
from __future__ import annotations

import json

import pytest

from composer_plugins.tools.demo.embedded_corpus import DOMAINS, WIDE_DOMAINS, write_embedded_corpus


def test_wide_corpus_writes_six_distinct_domains(tmp_path):
    files = write_embedded_corpus(tmp_path, WIDE_DOMAINS)
    assert list(files) == list(WIDE_DOMAINS) and len(WIDE_DOMAINS) == 6 and WIDE_DOMAINS[:3] == DOMAINS
    first_docs = {}
    for domain, path in files.items():
        docs = [json.loads(line)['text'] for line in path.read_text(encoding='utf-8').splitlines()]
        # the quality benchmark holds out at least 3 documents per domain and trains on the rest
        assert len(docs) >= 10, (domain, len(docs))
        assert all(doc.strip() for doc in docs), domain
        first_docs[domain] = docs[0]
    assert len(set(first_docs.values())) == len(first_docs)  # no two domains read the same source
    assert '#include' in ''.join(json.loads(x)['text'] for x in files['c_headers'].read_text().splitlines()[:20])
    assert 'def test' in ''.join(json.loads(x)['text'] for x in files['tests'].read_text().splitlines()[:5])


def test_unknown_domain_is_named(tmp_path):
    with pytest.raises(ValueError, match="'poetry'"):
        write_embedded_corpus(tmp_path, ('code', 'poetry'))
    assert not list(tmp_path.iterdir())  # nothing written before the check
