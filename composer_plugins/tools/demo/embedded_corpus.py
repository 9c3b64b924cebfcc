"""A corpus of real text that every installation carries, for the embedded demo and benchmarks.

The demo's three domains (:data:`DOMAINS`):

* ``code``: the Python standard library's source files;
* ``docs``: the interpreter's help topics (``pydoc_data.topics``), English prose;
* ``licenses``: the license texts shipped in the installed packages' ``*.dist-info``.

Three more make the 6-domain corpus (:data:`WIDE_DOMAINS`) on which the mixing rules are compared:

* ``c_headers``: the interpreter's C headers (``include/python3.x``), C;
* ``readmes``: the installed packages' descriptions (the body of ``*.dist-info/METADATA``), Markdown
  and reStructuredText;
* ``tests``: the standard library's test modules (``test/test_*.py``), Python of another style.

Nothing is downloaded and no third-party text is stored in this repository: the domains
are assembled at run time from what is installed, as JSON lines ``{"text": ...}``.
"""
from __future__ import annotations

import json
import logging
import site
import sysconfig
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

DOMAINS = ('code', 'docs', 'licenses')
WIDE_DOMAINS = (*DOMAINS, 'c_headers', 'readmes', 'tests')


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


def c_header_documents() -> Iterator[str]:
    root = Path(sysconfig.get_paths()['include'])
    for path in sorted(root.rglob('*.h')):
        yield path.read_text(encoding='utf-8', errors='replace')


def readme_documents(min_chars: int = 200) -> Iterator[str]:
    """The long description of each installed distribution: METADATA after its header block."""
    for packages in site.getsitepackages():
        for path in sorted(Path(packages).glob('*.dist-info/METADATA')):
            _, _, body = path.read_text(encoding='utf-8', errors='replace').partition('\n\n')
            if len(body.strip()) >= min_chars:
                yield body


def test_module_documents() -> Iterator[str]:
    root = Path(sysconfig.get_paths()['stdlib']) / 'test'
    for path in sorted(root.glob('test_*.py')):
        yield path.read_text(encoding='utf-8', errors='replace')


SOURCES: dict[str, Callable[[], Iterator[str]]] = {
    'code': code_documents, 'docs': docs_documents, 'licenses': license_documents,
    'c_headers': c_header_documents, 'readmes': readme_documents, 'tests': test_module_documents,
}


def write_embedded_corpus(out_dir: str | Path, domains: Sequence[str] = DOMAINS) -> dict[str, Path]:
    """Write ``<out_dir>/<domain>.jsonl`` for each of ``domains`` (keys of :data:`SOURCES`); returns domain -> file."""
    unknown = [d for d in domains if d not in SOURCES]
    if unknown:
        raise ValueError(f'embedded corpus: unknown domain(s) {unknown}; known: {list(SOURCES)}')
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for domain in domains:
        documents = SOURCES[domain]
        path = out_dir / f'{domain}.jsonl'
        count = 0
        with open(path, 'w', encoding='utf-8') as f:
            for text in documents():
                f.write(json.dumps({'text': text}) + '\n')
                count += 1
        log.info('Domain %s: %d documents in %s', domain, count, path)
        files[domain] = path
    return files
