"""Load a tokenizer by the same names the YAML's ``tokenizer.name`` accepts."""
from __future__ import annotations

import os

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from data_prep.byte_tokenizer import ByteLevelTokenizer

NAMED_TOKENIZERS = {'byte-level': ByteLevelTokenizer}


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """``byte-level`` (built in), a local tokenizer directory or a hub id."""
    if name in NAMED_TOKENIZERS:
        return NAMED_TOKENIZERS[name]()
    return AutoTokenizer.from_pretrained(os.path.expanduser(name))
