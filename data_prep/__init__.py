"""Data preparation for ``shear prep``: raw text per domain to fixed-length MDS token rows.

Modules:
    sources: resolve inputs (JSONL files, folders of text files, Hugging Face datasets)
        and iterate their documents, counting what is skipped.
    tokenize: tokenize chunks of documents in a process pool, in order.
    prep: orchestration: eval/train splits per domain, MDS output and ``manifest.json``.
"""
