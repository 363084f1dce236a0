"""The checkpoint's Hugging Face fast tokenizer, plus streaming detokenization.

The tokenizer is read straight from `tokenizer.json` with the `tokenizers` library: going
through `transformers.AutoTokenizer` would validate the MPT model config, which rejects the
grouped-query attention config of Replit Code v1.5.
"""

from __future__ import annotations

import codecs
import json
from functools import cache
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer

DEFAULT_EOS = "<|endoftext|>"


class TokenizerError(ValueError):
    """A tokenizer file that is missing or unreadable."""


@cache
def _byte_decoder() -> dict[str, int]:
    """The inverse of GPT-2's byte-to-printable-character table used by byte-level BPE."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {chr(code): byte for byte, code in zip(printable, codes, strict=True)}


class Tokenizer:
    def __init__(self, model_dir: Path) -> None:
        model_dir = Path(model_dir)
        path = model_dir / "tokenizer.json"
        try:
            self._tok = HFTokenizer.from_file(str(path))
        except Exception as error:  # tokenizers raises plain Exception subclasses
            raise TokenizerError(f"{path}: cannot load tokenizer ({error})") from None
        eos = DEFAULT_EOS
        config_path = model_dir / "tokenizer_config.json"
        if config_path.exists():
            try:
                value = json.loads(config_path.read_text()).get("eos_token") or eos
            except json.JSONDecodeError as error:
                raise TokenizerError(f"{config_path}: not valid JSON ({error})") from None
            eos = value.get("content", eos) if isinstance(value, dict) else value
        self.eos_id: int | None = self._tok.token_to_id(eos)
        self.vocab_size = self._tok.get_vocab_size()
        self._token_bytes = self._build_token_bytes()

    def _build_token_bytes(self) -> list[bytes] | None:
        """Each id's exact bytes when the tokenizer is byte-level; None otherwise."""
        if type(self._tok.decoder).__name__ != "ByteLevel":
            return None
        decoder = _byte_decoder()
        special = {t.content for t in self._tok.get_added_tokens_decoder().values() if t.special}
        table: list[bytes] = [b""] * self.vocab_size
        for token, index in self._tok.get_vocab(with_added_tokens=True).items():
            if index >= self.vocab_size or token in special:
                continue
            if all(ch in decoder for ch in token):
                table[index] = bytes(decoder[ch] for ch in token)
            else:
                table[index] = token.encode("utf-8")
        return table

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True)

    def stream(self) -> StreamDecoder:
        return StreamDecoder(self)


class StreamDecoder:
    """Turns token ids into text as they arrive, never emitting half a UTF-8 character.

    Byte-level tokens are joined as bytes and fed to an incremental UTF-8 decoder, which holds
    back an incomplete multi-byte sequence until the token that completes it arrives.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._ids: list[int] = []
        self._emitted = ""

    def push(self, token_id: int) -> str:
        table = self._tokenizer._token_bytes
        if table is not None:
            return self._utf8.decode(table[token_id] if 0 <= token_id < len(table) else b"")
        self._ids.append(token_id)
        text = self._tokenizer.decode(self._ids)
        if text.endswith("\ufffd"):
            return ""
        new, self._emitted = text[len(self._emitted) :], text
        return new

    def flush(self) -> str:
        if self._tokenizer._token_bytes is not None:
            return self._utf8.decode(b"", final=True)
        text = self._tokenizer.decode(self._ids)
        new, self._emitted = text[len(self._emitted) :], text
        return new
