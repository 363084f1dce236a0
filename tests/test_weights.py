import json
import shutil
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

from model.config import load_config
from model.gguf_export import export_gguf
from model.weights import (
    WeightsError,
    bfloat16_bits_to_float32,
    float32_to_bfloat16_bits,
    load_weights,
)

META_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")


def copy_meta(src, dst):
    dst.mkdir(parents=True, exist_ok=True)
    for name in META_FILES:
        shutil.copy(src / name, dst / name)
    return dst


def read_tensors(model_dir):
    from safetensors.numpy import load_file

    return load_file(str(model_dir / "model.safetensors"))


def write_bf16_safetensors(path, tensors):
    """Writes bfloat16 tensors given as uint16 bit patterns (NumPy has no bfloat16)."""
    header, offset, blobs = {}, 0, []
    for name, bits in tensors.items():
        blob = np.ascontiguousarray(bits, dtype=np.uint16).tobytes()
        header[name] = {
            "dtype": "BF16",
            "shape": list(bits.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        offset += len(blob)
        blobs.append(blob)
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def test_bfloat16_rounding_is_to_nearest_even():
    values = np.array([1.0, 1.00390625, 1.01171875, -2.5, 3.0e38], dtype=np.float32)
    bits = float32_to_bfloat16_bits(values)
    assert bits.tolist() == [0x3F80, 0x3F80, 0x3F82, 0xC020, 0x7F62]
    assert bfloat16_bits_to_float32(bits)[:4].tolist() == [1.0, 1.0, 1.015625, -2.5]


def test_sharded_safetensors_equal_the_single_file(tiny_model_dir, tmp_path):
    config = load_config(tiny_model_dir)
    tensors = read_tensors(tiny_model_dir)
    sharded = copy_meta(tiny_model_dir, tmp_path / "sharded")
    names = sorted(tensors)
    halves = {
        "model-00001-of-00002.safetensors": names[::2],
        "model-00002-of-00002.safetensors": names[1::2],
    }
    weight_map = {}
    for file, part in halves.items():
        save_file({n: tensors[n] for n in part}, str(sharded / file))
        weight_map.update({n: file for n in part})
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    single = load_weights(tiny_model_dir, config)
    split = load_weights(sharded, config)
    assert all(np.array_equal(single[n], split[n]) for n in single)

    (sharded / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(WeightsError, match="shard model-00002-of-00002.safetensors is missing"):
        load_weights(sharded, config)


def test_gguf_gives_the_same_tensors_as_safetensors(tiny_model_dir, tmp_path):
    config = load_config(tiny_model_dir)
    gguf_dir = copy_meta(tiny_model_dir, tmp_path / "gguf")
    export_gguf(tiny_model_dir, gguf_dir / "model.gguf")
    for encoding in ("float32", "bfloat16"):
        a = load_weights(tiny_model_dir, config, encoding)
        b = load_weights(gguf_dir, config, encoding)
        assert all(np.array_equal(a[n], b[n]) for n in a), encoding


def test_bfloat16_checkpoints_load_in_both_encodings(tiny_model_dir, tmp_path):
    config = load_config(tiny_model_dir)
    tensors = read_tensors(tiny_model_dir)
    bf16_dir = copy_meta(tiny_model_dir, tmp_path / "bf16")
    bits = {n: float32_to_bfloat16_bits(v) for n, v in tensors.items()}
    write_bf16_safetensors(bf16_dir / "model.safetensors", bits)
    as_bf16 = load_weights(bf16_dir, config, "bfloat16")
    as_f32 = load_weights(bf16_dir, config, "float32")
    name = "transformer.blocks.0.attn.Wqkv.weight"
    assert np.array_equal(as_bf16[name], bits[name])
    assert np.array_equal(as_f32[name], bfloat16_bits_to_float32(bits[name]))
    assert np.abs(as_f32[name] - tensors[name]).max() <= np.abs(tensors[name]).max() * 2**-8


def test_truncated_missing_and_misshapen_tensors_are_named(tiny_model_dir, tmp_path):
    config = load_config(tiny_model_dir)
    tensors = read_tensors(tiny_model_dir)
    broken = copy_meta(tiny_model_dir, tmp_path / "broken")
    weights_file = broken / "model.safetensors"

    raw = (tiny_model_dir / "model.safetensors").read_bytes()
    weights_file.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(WeightsError, match=r"model\.safetensors: tensor .* is truncated"):
        load_weights(broken, config)
    weights_file.write_bytes(raw[:5])
    with pytest.raises(WeightsError, match="truncated safetensors file"):
        load_weights(broken, config)

    missing = dict(tensors)
    del missing["transformer.blocks.1.ffn.up_proj.weight"]
    save_file(missing, str(weights_file))
    with pytest.raises(WeightsError, match=r"missing tensor transformer\.blocks\.1\.ffn\.up_proj"):
        load_weights(broken, config)

    wrong = dict(tensors)
    wrong["transformer.norm_f.weight"] = np.ones(7, dtype=np.float32)
    save_file(wrong, str(weights_file))
    with pytest.raises(WeightsError, match=r"transformer\.norm_f\.weight has shape \(7,\)"):
        load_weights(broken, config)

    weights_file.unlink()
    with pytest.raises(WeightsError, match="no weights found"):
        load_weights(broken, config)

    with pytest.raises(WeightsError, match="unsupported quantization encoding"):
        load_weights(tiny_model_dir, config, "int4")


def test_pytorch_bin_loads_with_torch_or_says_how_to_convert(tiny_model_dir, tmp_path):
    config = load_config(tiny_model_dir)
    bin_dir = copy_meta(tiny_model_dir, tmp_path / "bin")
    try:
        import torch
    except ImportError:
        (bin_dir / "pytorch_model.bin").write_bytes(b"not used without torch")
        with pytest.raises(WeightsError, match="torch is not installed.*convert"):
            load_weights(bin_dir, config)
        return
    tensors = read_tensors(tiny_model_dir)
    torch.save(
        {n: torch.from_numpy(v.copy()) for n, v in tensors.items()}, bin_dir / "pytorch_model.bin"
    )
    loaded = load_weights(bin_dir, config)
    assert all(np.array_equal(loaded[n], tensors[n]) for n in loaded)


def test_owned_weights_are_copies_of_the_file_not_views(tiny_model_dir):
    """The CPU engine asks for weights it owns: read once from the file, then unmapped."""
    config = load_config(tiny_model_dir)
    mapped = load_weights(tiny_model_dir, config)
    assert any(not array.flags.owndata for array in mapped.values())
    owned = load_weights(tiny_model_dir, config, owned=True)
    assert all(array.flags.owndata for array in owned.values())
    assert all(np.array_equal(owned[name], mapped[name]) for name in mapped)


def test_reading_reports_percentages_up_to_all_of_the_file(tiny_model_dir):
    reports = []
    load_weights(tiny_model_dir, load_config(tiny_model_dir), progress=reports.append)
    percents = [r.percent for r in reports]
    assert {r.stage for r in reports} == {"reading weights"}
    assert percents == sorted(set(percents)) and percents[-1] == 100
    assert reports[-1].message.startswith("reading weights:")
