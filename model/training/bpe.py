"""Byte-level BPE tokenizers in the GPT-NeoX layout that Replit Code's `tokenizer.json` uses."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"


def train_byte_level_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Trains a tokenizer whose first ids are the special tokens, then the 256 byte symbols.

    Every byte has a token of its own, so any text (including invalid UTF-8 once encoded
    with surrogates escaped) round-trips; that is what lets the streaming decoder work on
    bytes.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD_TOKEN, EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer
