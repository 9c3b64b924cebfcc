"""A byte-level tokenizer that needs no download: 256 byte tokens plus two specials.

Used by the tiny test models and the tiny demo. It is a real
``PreTrainedTokenizerFast`` (HF ``tokenizers`` byte-level BPE with no merges), and
``save_pretrained`` writes it as a plain ``PreTrainedTokenizerFast`` so that a saved
model directory loads with ``AutoTokenizer`` and no code of ours.
"""
from __future__ import annotations

from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

EOS_TOKEN = '<|endoftext|>'
PAD_TOKEN = '<|pad|>'
BYTE_VOCAB_SIZE = 256  # ids 0..255 are bytes; EOS = 256, PAD = 257


def build_byte_level_backend() -> Tokenizer:
    """The ``tokenizers`` object: byte i maps to id i; EOS and PAD follow."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    byte_to_char = {b: c for b, c in enumerate(sorted(alphabet, key=_byte_of_char))}
    vocab = {char: byte for byte, char in byte_to_char.items()}
    vocab[EOS_TOKEN] = BYTE_VOCAB_SIZE
    vocab[PAD_TOKEN] = BYTE_VOCAB_SIZE + 1
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([EOS_TOKEN, PAD_TOKEN])
    return backend


def _byte_of_char(char: str) -> int:
    """Inverse of GPT-2's bytes_to_unicode map (printable bytes map to themselves)."""
    code = ord(char)
    printable = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(
        range(ord('®'), ord('ÿ') + 1),
    )
    if code in printable:
        return code
    others = [b for b in range(256) if b not in printable]
    return others[code - 256]


class ByteLevelTokenizer(PreTrainedTokenizerFast):
    """Registered in llm-foundry's tokenizer registry as ``byte-level``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault('tokenizer_object', build_byte_level_backend())
        kwargs.setdefault('eos_token', EOS_TOKEN)
        kwargs.setdefault('pad_token', PAD_TOKEN)
        kwargs.setdefault('model_max_length', int(1e30))
        super().__init__(**kwargs)

    def save_pretrained(self, save_directory: Any, *args: Any, **kwargs: Any) -> Any:
        plain = PreTrainedTokenizerFast(
            tokenizer_object=self.backend_tokenizer,
            eos_token=self.eos_token,
            pad_token=self.pad_token,
            model_max_length=self.model_max_length,
        )
        return plain.save_pretrained(save_directory, *args, **kwargs)
