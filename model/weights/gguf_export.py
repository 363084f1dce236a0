"""Writes a checkpoint as GGUF in the MPT layout that llama.cpp loads.

Used to run llama.cpp on exactly the weights this project runs (benchmarks, and a team's
llama.cpp server: `python -m model.weights.gguf_export --model demo --out demo.gguf`), and to test
the GGUF loader against the safetensors one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import gguf
import numpy as np

from model.config import load_config
from model.hub import DEFAULT_MODEL, resolve_model_dir
from model.tokenizer import Tokenizer
from model.weights.encodings import GGML_TYPES, bfloat16_bits_to_float32
from model.weights.loading import load_weights
from model.weights.tensors import gguf_name

FILE_TYPES = {
    "float32": gguf.LlamaFileType.ALL_F32,
    "bfloat16": gguf.LlamaFileType.MOSTLY_BF16,
    "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
}


def _add_tokenizer(writer: gguf.GGUFWriter, model_dir: Path, vocab_size: int) -> None:
    """The GPT-2 style BPE vocabulary and merges that llama.cpp's tokenizer needs, complete
    enough that model.gguf_metadata rebuilds the same tokenizer without tokenizer.json."""
    spec = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    vocab: dict[str, int] = dict(spec["model"]["vocab"])
    added = {t["content"]: t for t in spec.get("added_tokens", [])}
    vocab.update({token: t["id"] for token, t in added.items()})
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    types = [gguf.TokenType.UNUSED] * vocab_size
    for token, index in vocab.items():
        if index >= vocab_size:
            continue
        tokens[index] = token
        if token not in added:
            types[index] = gguf.TokenType.NORMAL
        elif added[token].get("special", False):
            types[index] = gguf.TokenType.CONTROL
        else:
            types[index] = gguf.TokenType.USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")  # the split of tokenizer.json's ByteLevel pre-tokenizer
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    eos = Tokenizer(model_dir).eos_id
    if eos is not None:
        writer.add_eos_token_id(eos)
        writer.add_bos_token_id(eos)


def add_tensors(writer: gguf.GGUFWriter, weights: dict[str, np.ndarray], encoding: str) -> None:
    """Adds `load_weights`' tensors in `encoding` under their GGUF names, as GGUF types."""
    for name, array in weights.items():
        if array.dtype == np.uint16 and array.ndim == 1:
            # llama.cpp multiplies by norm weights in float32 only (as its own converter
            # writes them); the rounded bfloat16 values convert to float32 exactly.
            writer.add_tensor(gguf_name(name), bfloat16_bits_to_float32(array))
        elif array.dtype == np.uint16:
            writer.add_tensor(gguf_name(name), array, raw_dtype=gguf.GGMLQuantizationType.BF16)
        elif array.dtype == np.uint8:
            writer.add_tensor(gguf_name(name), array, raw_dtype=GGML_TYPES[encoding])
        else:
            writer.add_tensor(gguf_name(name), array)


def export_gguf(model_dir: Path, out_path: Path, encoding: str = "float32") -> Path:
    """Writes `out_path` from the Hugging Face checkpoint in `model_dir`, its matrices in
    `encoding` (every one, the tied embedding too, in a block encoding) and its norms in
    float32."""
    model_dir, out_path = Path(model_dir), Path(out_path)
    config = load_config(model_dir)
    weights = load_weights(model_dir, config, encoding).tensors
    writer = gguf.GGUFWriter(str(out_path), "mpt")
    writer.add_name(model_dir.name)
    writer.add_context_length(config.max_seq_len)
    writer.add_embedding_length(config.d_model)
    writer.add_block_count(config.n_layers)
    writer.add_feed_forward_length(config.ffn_hidden_size)
    writer.add_head_count(config.n_heads)
    writer.add_head_count_kv(config.kv_n_heads)
    writer.add_max_alibi_bias(config.alibi_bias_max)
    writer.add_layer_norm_eps(config.layer_norm_eps)
    writer.add_file_type(FILE_TYPES[encoding])
    _add_tokenizer(writer, model_dir, config.vocab_size)
    add_tensors(writer, weights, encoding)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_path


# The files besides the weights that a model directory holds (the tokenizer config optional).
META_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")


def export_gguf_dir(model_dir: Path, out_dir: Path, encoding: str) -> Path:
    """A model directory whose weights are one GGUF file in `encoding` (returned), so that this
    engine and llama.cpp load the same file; the config and tokenizer are copied."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gguf_path = export_gguf(model_dir, out_dir / "model.gguf", encoding)
    for name in META_FILES:  # after the weights: a directory with a config is complete
        if (model_dir / name).exists():
            shutil.copy(model_dir / name, out_dir / name)
    return gguf_path


def main(argv: list[str] | None = None) -> int:
    """The command line: a checkpoint named as `replit-lsp` names it, written as one GGUF."""
    parser = argparse.ArgumentParser(
        prog="python -m model.weights.gguf_export",
        description="Write a checkpoint as the GGUF file that llama.cpp's servers load.",
    )
    parser.add_argument("--weight-path", help="model directory in Hugging Face layout, or repo id")
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help="Hugging Face repo id, or 'demo' for the bundled one"
    )
    parser.add_argument("--encoding", choices=sorted(FILE_TYPES), default="float32")
    parser.add_argument("--out", type=Path, required=True, help="the GGUF file to write")
    args = parser.parse_args(argv)
    path = export_gguf(resolve_model_dir(args.weight_path, args.model), args.out, args.encoding)
    print(f"wrote {path} ({args.encoding})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
