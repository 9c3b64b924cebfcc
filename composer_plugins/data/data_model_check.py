"""Data and model must agree: the tokenizer that prepared the shards is the one the run trains with.

``shear prep`` records in ``manifest.json`` the tokenizer's name, its ``vocab_size`` and, since
manifest version 2, ``vocab_sha256``: a fingerprint of its token-to-id map
(:func:`vocab_fingerprint`). Two checks use them:

* :func:`check_manifest_vocab` at config load (no torch): a manifest whose ``vocab_size``
  exceeds the model's would feed ids past the embedding table, an index error (CPU) or a
  device assert (GPU) at the first such token;
* :func:`check_manifest_tokenizer` at run start, once the run's tokenizer is loaded: a
  different token-to-id map (a different tokenizer of any size) trains on garbage silently.

Each error names the data folder, both tokenizers and both sizes.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Optional

from composer_plugins.errors import ConfigError
from data_prep.manifest import find_manifest, read_manifest_fields, vocab_fingerprint


def manifests(locals_: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """``(key, folder, manifest path, manifest)`` of each ``(key, folder)`` that has a manifest."""
    for key, local in locals_:
        path = find_manifest(local)
        if path is not None:
            yield key, local, path, read_manifest_fields(path)


def check_manifest_vocab(locals_: Iterable[tuple[str, str]], model_source: str, model_vocab: Optional[int]) -> None:
    """Each ``(key, folder)``'s manifest ``vocab_size`` is at most the model's ``vocab_size``."""
    if model_vocab is None:
        return
    for key, local, path, manifest in manifests(locals_):
        data_vocab = manifest.get('vocab_size')
        if isinstance(data_vocab, int) and data_vocab > model_vocab:
            raise ConfigError(
                f'{key}: {local!r} was prepared with tokenizer {manifest.get("tokenizer")!r} ({data_vocab} tokens, '
                f'{path}), but model.source {model_source!r} has vocab_size {model_vocab}: its ids would index '
                'past the embedding table; prepare the data with the model\'s tokenizer')


def check_manifest_tokenizer(locals_: Iterable[tuple[str, str]], tokenizer_name: str,
                             load_tokenizer: Callable[[], Any]) -> None:
    """Each ``(key, folder)``'s manifest fingerprint, where recorded, equals the run tokenizer's.

    ``load_tokenizer`` is called once, and only if some manifest records a fingerprint.

    Raises:
        ConfigError: naming the folder, the tokenizer that prepared it and the run's.
    """
    tokenizer: Any = None
    fingerprint: Optional[str] = None
    for key, local, path, manifest in manifests(locals_):
        recorded = manifest.get('vocab_sha256')
        if recorded is None:
            continue
        if tokenizer is None:
            tokenizer = load_tokenizer()
            fingerprint = vocab_fingerprint(tokenizer)
        if recorded != fingerprint:
            raise ConfigError(
                f'{key}: {local!r} was prepared with tokenizer {manifest.get("tokenizer")!r} '
                f'({manifest.get("vocab_size")} tokens), but the run trains with tokenizer.name {tokenizer_name!r} '
                f'({len(tokenizer)} tokens), whose token ids differ ({path}); prepare the data with the run\'s '
                'tokenizer or set tokenizer.name to the one that prepared it')
