"""The prompt budgeted in characters, for a remote server whose tokenizer is not here."""

from __future__ import annotations

import logging
from pathlib import Path

from lsp_server.generation.protocol import TextTokenizer
from model.tokenizer import Tokenizer, TokenizerError

log = logging.getLogger("replit_lsp.remote")

# Without the model's tokenizer, one token is taken to be this many characters: source code
# averages 3-4 characters a token, so a prompt budgeted this way fits the remote's context.
CHARS_PER_TOKEN = 3

# A code point plus one: a zero digit ends a chunk of CharacterBudget.
_BASE = 0x110001


class CharacterBudget:
    """Stands in for the model's tokenizer when it is not on this machine.

    Each id stands for up to `CHARS_PER_TOKEN` characters, so the prompt's token budget
    becomes a character budget, and ids decode back to exactly their characters: prompt
    building cuts and joins ids as it does real tokens, and the text sent is the text cut.
    """

    vocab_size = _BASE**CHARS_PER_TOKEN

    def encode(self, text: str) -> list[int]:
        ids = []
        for start in range(0, len(text), CHARS_PER_TOKEN):
            value = 0
            for char in reversed(text[start : start + CHARS_PER_TOKEN]):
                value = value * _BASE + ord(char) + 1
            ids.append(value)
        return ids

    def decode(self, ids: list[int]) -> str:
        chars = []
        for id_ in ids:
            value = id_
            while value > 0:
                value, digit = divmod(value, _BASE)
                if digit:
                    chars.append(chr(digit - 1))
        return "".join(chars)


def load_tokenizer(model_dir: Path | None) -> TextTokenizer:
    """The model's tokenizer from a local copy, else the character budget."""
    if model_dir is None:
        log.info("no local copy of the model's tokenizer: budgeting the prompt in characters")
        return CharacterBudget()
    try:
        return Tokenizer(model_dir)
    except (TokenizerError, OSError) as error:
        log.warning("%s; budgeting the prompt in characters", error)
        return CharacterBudget()
