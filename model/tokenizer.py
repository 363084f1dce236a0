"""The checkpoint's Hugging Face fast tokenizer, plus streaming detokenization.

The tokenizer is read straight from `tokenizer.json` with the `tokenizers` library: going
through `transformers.AutoTokenizer` would validate the MPT model config, which rejects the
grouped-query attention config of Replit Code v1.5. A directory without `tokenizer.json`
gets the same tokenizer rebuilt from its GGUF file's metadata.
"""

from __future__ import annotations

import codecs
import json
from functools import cache
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer

from model.gguf_metadata import GGUFMetadataError, gguf_tokenizer, model_gguf

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


def _load(model_dir: Path) -> tuple[HFTokenizer, int | None]:
    """The tokenizer, and the end-of-text id when the file that holds it records one."""
    path = model_dir / "tokenizer.json"
    gguf_file = None if path.exists() else model_gguf(model_dir)
    if gguf_file is not None:
        try:
            return gguf_tokenizer(gguf_file)
        except GGUFMetadataError as error:
            raise TokenizerError(str(error)) from None
    try:
        return HFTokenizer.from_file(str(path)), None
    except Exception as error:  # tokenizers raises plain Exception subclasses
        raise TokenizerError(f"{path}: cannot load tokenizer ({error})") from None


def _configured_eos(model_dir: Path) -> str | None:
    """The eos_token of `tokenizer_config.json`, if there is one."""
    config_path = model_dir / "tokenizer_config.json"
    if not config_path.exists():
        return None
    try:
        value = json.loads(config_path.read_text()).get("eos_token")
    except json.JSONDecodeError as error:
        raise TokenizerError(f"{config_path}: not valid JSON ({error})") from None
    return value.get("content") if isinstance(value, dict) else value


class Tokenizer:
    def __init__(self, model_dir: Path) -> None:
        model_dir = Path(model_dir)
        self._tok, recorded_eos = _load(model_dir)
        eos = _configured_eos(model_dir)
        self.eos_id: int | None = (
            recorded_eos
            if eos is None and recorded_eos is not None
            else self._tok.token_to_id(eos or DEFAULT_EOS)
        )
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
