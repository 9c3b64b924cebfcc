"""Data preparation for ``shear prep``: raw text per domain to fixed-length MDS token rows.

The ground floor of the project: it imports nothing of ``composer_plugins``, which builds on it.

Modules:
    sources: resolve inputs (JSONL files, folders of text files, Hugging Face datasets)
        and iterate their documents, counting what is skipped.
    tokenize: tokenize chunks of documents in a process pool, in order.
    tokenizers, byte_tokenizer: tokenizers by name (the byte-level one is built in).
    mds: the MDS row format that prep writes and training reads.
    manifest: ``manifest.json`` beside the shards (token counts, tokenizer fingerprint).
    output_dirs: atomic output folders (prep, export, converters).
    errors: the user-facing error base both packages raise.
    prep: orchestration: eval/train splits per domain, MDS output and ``manifest.json``.
"""
