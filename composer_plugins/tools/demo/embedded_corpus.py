"""A 3-domain corpus of real text that every installation carries, for the embedded demo.

* ``code``: the Python standard library's source files;
* ``docs``: the interpreter's help topics (``pydoc_data.topics``), English prose;
* ``licenses``: the license texts shipped in the installed packages' ``*.dist-info``.

Nothing is downloaded and no third-party text is stored in this repository: the domains
are assembled at run time from what is installed, as JSON lines ``{"text": ...}``.
"""
from __future__ import annotations

import json
import logging
import site
import sysconfig
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

DOMAINS = ('code', 'docs', 'licenses')


def code_documents() -> Iterator[str]:
    root = Path(sysconfig.get_paths()['stdlib'])
    for path in sorted(root.glob('*.py')):
        yield path.read_text(encoding='utf-8', errors='replace')


def docs_documents() -> Iterator[str]:
    from pydoc_data.topics import topics
    for name in sorted(topics):
        yield topics[name]


def license_documents() -> Iterator[str]:
    seen: set[str] = set()
    for packages in site.getsitepackages():
        for path in sorted(Path(packages).glob('*.dist-info/**/*')):
            if not path.is_file() or not path.name.upper().startswith(('LICENSE', 'LICENCE', 'COPYING', 'NOTICE')):
                continue
            text = path.read_text(encoding='utf-8', errors='replace')
            if text.strip() and text not in seen:
                seen.add(text)
                yield text


def write_embedded_corpus(out_dir: str | Path) -> dict[str, Path]:
    """Write ``<out_dir>/<domain>.jsonl`` for the three domains; returns domain -> file."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = {'code': code_documents, 'docs': docs_documents, 'licenses': license_documents}
    files = {}
    for domain, documents in sources.items():
        path = out_dir / f'{domain}.jsonl'
        count = 0
        with open(path, 'w', encoding='utf-8') as f:
            for text in documents():
                f.write(json.dumps({'text': text}) + '\n')
                count += 1
        log.info('Domain %s: %d documents in %s', domain, count, path)
        files[domain] = path
    return files
