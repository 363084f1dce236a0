import shutil
import sysconfig
from pathlib import Path

import gguf
import numpy as np
import pytest

from model.config import ConfigError, load_config
from model.tokenizer import Tokenizer, TokenizerError
from model.weights.files import weight_files
from model.weights.gguf_export import export_gguf
from model.weights.loading import load_weights


def stdlib_source(lines: int = 400) -> str:
    """Python source the tiny tokenizer was not trained on, plus text outside its training."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    text = "".join(
        (stdlib / name).read_text(encoding="utf-8") for name in ("textwrap.py", "shlex.py")
    )
    extra = "s = 'héllo wörld ✓ 🐍 日本'  # <|endoftext|> inside a comment<|pad|>\n\t\r\n"
    return "".join(text.splitlines(keepends=True)[:lines]) + extra


@pytest.fixture(scope="module")
def gguf_only_dir(tiny_model_dir, tmp_path_factory):
    """The tiny checkpoint as the GGUF file alone, without config.json or tokenizer files."""
    out = tmp_path_factory.mktemp("gguf-only") / "replit-code-tiny-f32.gguf"
    export_gguf(tiny_model_dir, out)
    return out.parent


def write_gguf(path: Path, architecture: str, **keys: int | float) -> Path:
    writer = gguf.GGUFWriter(str(path), architecture)
    for key, value in keys.items():
        name = key.replace("__", ".")
        if isinstance(value, float):
            writer.add_float32(f"{architecture}.{name}", value)
        else:
            writer.add_uint32(f"{architecture}.{name}", value)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(["<s>", "a", "b"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_alone_gives_the_config_of_config_json(tiny_model_dir, gguf_only_dir):
    assert sorted(p.name for p in gguf_only_dir.iterdir()) == ["replit-code-tiny-f32.gguf"]
    assert load_config(gguf_only_dir) == load_config(tiny_model_dir)


def test_gguf_alone_gives_the_tokenizer_of_tokenizer_json(tiny_model_dir, gguf_only_dir):
    original, rebuilt = Tokenizer(tiny_model_dir), Tokenizer(gguf_only_dir)
    assert (rebuilt.eos_id, rebuilt.vocab_size) == (original.eos_id, original.vocab_size)
    text = stdlib_source()
    ids = original.encode(text)
    assert len(ids) > 2000
    assert rebuilt.encode(text) == ids
    assert rebuilt.decode(ids) == original.decode(ids)
    assert rebuilt.decode(ids) == text.replace("<|endoftext|>", "").replace("<|pad|>", "")
    stream = rebuilt.stream()
    assert "".join([stream.push(i) for i in ids] + [stream.flush()]) == original.decode(ids)


def test_gguf_alone_gives_the_weights_of_safetensors(tiny_model_dir, gguf_only_dir):
    config = load_config(gguf_only_dir)
    for encoding in ("float32", "bfloat16"):
        a = load_weights(tiny_model_dir, config, encoding).tensors
        b = load_weights(gguf_only_dir, config, encoding).tensors
        assert all(np.array_equal(a[n], b[n]) for n in a), encoding


def test_bfloat16_gguf_is_preferred_over_float32(tiny_model_dir, gguf_only_dir, tmp_path):
    both = tmp_path / "both"
    shutil.copytree(gguf_only_dir, both)
    export_gguf(tiny_model_dir, both / "replit-code-tiny-bf16.gguf", "bfloat16")
    assert weight_files(both) == [both / "replit-code-tiny-bf16.gguf"]
    assert load_config(both) == load_config(tiny_model_dir)


def test_gguf_of_another_architecture_or_incomplete_is_refused(tmp_path):
    llama = tmp_path / "llama"
    llama.mkdir()
    write_gguf(llama / "model.gguf", "llama", block_count=2)
    with pytest.raises(ConfigError, match=r"model\.gguf: general\.architecture is 'llama'"):
        load_config(llama)
    with pytest.raises(TokenizerError, match=r"tokenizer\.ggml\.model is 'llama'"):
        Tokenizer(llama)

    mpt_keys = {
        "context_length": 64,
        "embedding_length": 32,
        "block_count": 1,
        "attention__head_count": 4,
        "attention__layernorm_epsilon": 1e-5,
    }
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    write_gguf(incomplete / "model.gguf", "mpt", **mpt_keys)
    with pytest.raises(ConfigError, match=r"mpt\.attention\.max_alibi_bias is missing"):
        load_config(incomplete)

    no_alibi = tmp_path / "no-alibi"
    no_alibi.mkdir()
    write_gguf(no_alibi / "model.gguf", "mpt", **mpt_keys, attention__max_alibi_bias=0.0)
    with pytest.raises(ConfigError, match=r"model\.gguf: attn_config\.alibi must be true"):
        load_config(no_alibi)
