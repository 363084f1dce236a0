import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf.quants import dequantize, quantize
from safetensors.numpy import save_file

from model.config import load_config, parse_config
from model.engine.options import AUTO, EngineOptions, resolve_encoding
from model.training.export import save_bfloat16_safetensors
from model.weights.encodings import (
    ENCODINGS,
    GGML_TYPES,
    bfloat16_bits_to_float32,
    float32_to_bfloat16_bits,
)
from model.weights.files import WeightsError
from model.weights.gguf_export import export_gguf
from model.weights.gguf_tensors import gguf_block_format
from model.weights.loading import load_weights
from testkit.checkpoints import full_width_config, make_random_checkpoint
from testkit.reference import dequantize_blocks

META_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")


def copy_meta(src, dst):
    dst.mkdir(parents=True, exist_ok=True)
    for name in META_FILES:
        shutil.copy(src / name, dst / name)
    return dst


def read_tensors(model_dir):
    from safetensors.numpy import load_file

    return load_file(str(model_dir / "model.safetensors"))


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
    single = load_weights(tiny_model_dir, config).tensors
    split = load_weights(sharded, config).tensors
    assert all(np.array_equal(single[n], split[n]) for n in single)

    (sharded / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(WeightsError, match="shard model-00002-of-00002.safetensors is missing"):
        load_weights(sharded, config)


def test_gguf_gives_the_same_tensors_as_safetensors(tiny_model_dir, tmp_path):
    config = load_config(tiny_model_dir)
    gguf_dir = copy_meta(tiny_model_dir, tmp_path / "gguf")
    export_gguf(tiny_model_dir, gguf_dir / "model.gguf")
    for encoding in ("float32", "bfloat16"):
        a = load_weights(tiny_model_dir, config, encoding).tensors
        b = load_weights(gguf_dir, config, encoding).tensors
        assert all(np.array_equal(a[n], b[n]) for n in a), encoding
    assert gguf_block_format(gguf_dir / "model.gguf") is None  # float32: no blocks to keep


def test_bfloat16_checkpoints_load_in_both_encodings(tiny_model_dir, tmp_path):
    config = load_config(tiny_model_dir)
    tensors = read_tensors(tiny_model_dir)
    bf16_dir = copy_meta(tiny_model_dir, tmp_path / "bf16")
    bits = {n: float32_to_bfloat16_bits(v) for n, v in tensors.items()}
    save_bfloat16_safetensors(bf16_dir / "model.safetensors", bits)
    as_bf16 = load_weights(bf16_dir, config, "bfloat16").tensors
    as_f32 = load_weights(bf16_dir, config, "float32").tensors
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


def save_torch_bin(path, tensors, dtype="float32"):
    """torch.save of a state dict the way checkpoints come: with a tensor the graph does not
    use (lm_head tied to wte, so sharing its storage) and two views into one storage."""
    torch = pytest.importorskip("torch")
    state = {n: torch.from_numpy(v.copy()).to(getattr(torch, dtype)) for n, v in tensors.items()}
    a, b = "transformer.blocks.0.norm_1.weight", "transformer.blocks.0.norm_2.weight"
    if a in state and b in state:
        shared = torch.cat([state[a], state[b]])
        state[a], state[b] = shared[: len(state[a])], shared[len(state[a]) :]
    if "transformer.wte.weight" in state:
        state["lm_head.weight"] = state["transformer.wte.weight"]
    torch.save(state, path)


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]), name


def test_pytorch_bin_equals_safetensors_in_float32_and_bfloat16(tiny_model_dir, tmp_path):
    config = load_config(tiny_model_dir)
    tensors = read_tensors(tiny_model_dir)
    bin_dir = copy_meta(tiny_model_dir, tmp_path / "bin")
    save_torch_bin(bin_dir / "pytorch_model.bin", tensors)
    for encoding in ENCODINGS:
        assert_same_weights(
            load_weights(tiny_model_dir, config, encoding).tensors,
            load_weights(bin_dir, config, encoding).tensors,
        )

    bf16_dir = copy_meta(tiny_model_dir, tmp_path / "bf16")
    save_bfloat16_safetensors(
        bf16_dir / "model.safetensors", {n: float32_to_bfloat16_bits(v) for n, v in tensors.items()}
    )
    bf16_bin_dir = copy_meta(tiny_model_dir, tmp_path / "bf16-bin")
    save_torch_bin(bf16_bin_dir / "pytorch_model.bin", tensors, "bfloat16")
    for encoding in ENCODINGS:
        assert_same_weights(
            load_weights(bf16_dir, config, encoding).tensors,
            load_weights(bf16_bin_dir, config, encoding).tensors,
        )


def test_sharded_pytorch_bin_equals_safetensors(tiny_model_dir, tmp_path):
    config = load_config(tiny_model_dir)
    tensors = read_tensors(tiny_model_dir)
    sharded = copy_meta(tiny_model_dir, tmp_path / "sharded")
    names = sorted(tensors)
    weight_map = {}
    for i, part in enumerate((names[::2], names[1::2]), start=1):
        file = f"pytorch_model-0000{i}-of-00002.bin"
        save_torch_bin(sharded / file, {n: tensors[n] for n in part})
        weight_map.update({n: file for n in part})
    (sharded / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert_same_weights(
        load_weights(tiny_model_dir, config).tensors, load_weights(sharded, config).tensors
    )

    (sharded / "pytorch_model-00002-of-00002.bin").unlink()
    with pytest.raises(WeightsError, match="shard pytorch_model-00002-of-00002.bin is missing"):
        load_weights(sharded, config)


class _RunsCode:
    """Unpickles into a call of `eval`, as a hostile checkpoint would."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return eval, (f"open({str(self.marker)!r}, 'w').close()",)


class _RunsCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("payload", [_RunsCode, _RunsCommand])
def test_pytorch_bin_that_would_run_code_is_refused(tiny_model_dir, tmp_path, payload):
    import pickle

    config = load_config(tiny_model_dir)
    marker = tmp_path / "ran"
    # The payload is live: plain pickle runs it.
    pickle.loads(pickle.dumps(payload(tmp_path / "proof")))
    assert (tmp_path / "proof").exists()

    bad = copy_meta(tiny_model_dir, tmp_path / "bad")
    with zipfile.ZipFile(bad / "pytorch_model.bin", "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"x": payload(marker)}, protocol=2))
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
    with pytest.raises(WeightsError, match=r"pytorch_model\.bin: .*refusing to load it"):
        load_weights(bad, config)
    assert not marker.exists()


def test_pytorch_bin_cannot_change_what_the_loader_hands_it(tiny_model_dir, tmp_path):
    config = load_config(tiny_model_dir)
    bad = copy_meta(tiny_model_dir, tmp_path / "bad")
    # GLOBAL torch.FloatStorage, then BUILD with {"dtype": "f8"}: would retype every later load.
    data = b"\x80\x02ctorch\nFloatStorage\n}X\x05\x00\x00\x00dtypeX\x02\x00\x00\x00f8sb."
    with zipfile.ZipFile(bad / "pytorch_model.bin", "w") as archive:
        archive.writestr("archive/data.pkl", data)
    with pytest.raises(WeightsError, match="tries to set the state"):
        load_weights(bad, config)

    good = copy_meta(tiny_model_dir, tmp_path / "good")
    save_torch_bin(good / "pytorch_model.bin", read_tensors(tiny_model_dir))
    assert_same_weights(
        load_weights(tiny_model_dir, config).tensors, load_weights(good, config).tensors
    )


def test_damaged_or_unsupported_pytorch_bin_names_the_file(tiny_model_dir, tmp_path):
    torch = pytest.importorskip("torch")
    config = load_config(tiny_model_dir)
    tensors = read_tensors(tiny_model_dir)
    broken = copy_meta(tiny_model_dir, tmp_path / "broken")
    path = broken / "pytorch_model.bin"
    save_torch_bin(path, tensors)
    raw = path.read_bytes()

    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(WeightsError, match=r"pytorch_model\.bin: .*truncated or corrupt"):
        load_weights(broken, config)

    state = {n: torch.from_numpy(v.copy()) for n, v in tensors.items()}
    torch.save(state, path, _use_new_zipfile_serialization=False)
    with pytest.raises(WeightsError, match=r"pytorch_model\.bin: legacy .* not supported"):
        load_weights(broken, config)

    name = "transformer.blocks.0.attn.Wqkv.weight"
    torch.save({**state, name: state[name].T.contiguous().T}, path)
    with pytest.raises(WeightsError, match=rf"tensor {re.escape(name)} is not contiguous"):
        load_weights(broken, config)


def test_pytorch_bin_loads_with_torch_not_importable(tiny_model_dir, tmp_path):
    config = load_config(tiny_model_dir)
    tensors = read_tensors(tiny_model_dir)
    bin_dir = copy_meta(tiny_model_dir, tmp_path / "bin")
    save_torch_bin(bin_dir / "pytorch_model.bin", tensors)
    out = tmp_path / "loaded.npz"
    script = (
        "import sys\n"
        "sys.modules['torch'] = None  # any import of torch now fails\n"
        "import numpy as np\n"
        "from model.config import load_config\n"
        "from model.weights.loading import load_weights\n"
        f"d = {str(bin_dir)!r}\n"
        f"np.savez({str(out)!r}, **load_weights(d, load_config(d)).tensors)\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)
    with np.load(out) as loaded:
        assert_same_weights(load_weights(tiny_model_dir, config).tensors, dict(loaded))


def test_weights_as_the_file_holds_them_are_writable_views_of_its_mapping(tiny_model_dir):
    """MAX binds a writable array where it lies and copies a read-only one: the views of the
    file's pages are copy-on-write, so a restart copies nothing and the file stays as it is."""
    config = load_config(tiny_model_dir)
    weights = load_weights(tiny_model_dir, config).tensors
    assert all(not array.flags.owndata and array.flags.writeable for array in weights.values())
    name = next(iter(weights))
    before = (tiny_model_dir / "model.safetensors").read_bytes()
    weights[name][...] = 0
    assert (tiny_model_dir / "model.safetensors").read_bytes() == before


def test_reading_reports_percentages_up_to_all_of_the_file(tiny_model_dir):
    reports = []
    load_weights(tiny_model_dir, load_config(tiny_model_dir), progress=reports.append)
    percents = [r.percent for r in reports]
    assert {r.stage for r in reports} == {"reading weights"}
    assert percents == sorted(set(percents)) and percents[-1] == 100
    assert reports[-1].message.startswith("reading weights:")


@pytest.mark.parametrize("encoding", ["q8_0", "q4_0"])
def test_block_layouts_are_those_gguf_writes_and_reads(tiny_model_dir, tmp_path, encoding):
    """The loader's blocks are the gguf package's bytes; a GGUF in those blocks loads as it
    lies (not widened and quantized again); testkit's dequantization, written from the
    format's definition, equals the gguf package's."""
    config = load_config(tiny_model_dir)
    tensors = read_tensors(tiny_model_dir)
    loaded = load_weights(tiny_model_dir, config, encoding).tensors
    name = "transformer.blocks.1.ffn.down_proj.weight"
    assert loaded[name].dtype == np.uint8
    assert np.array_equal(loaded[name], quantize(tensors[name], GGML_TYPES[encoding]))
    assert loaded["transformer.norm_f.weight"].dtype == np.float32
    gguf_dir = copy_meta(tiny_model_dir, tmp_path / "gguf")
    export_gguf(tiny_model_dir, gguf_dir / "model.gguf", encoding)
    reader = gguf.GGUFReader(str(gguf_dir / "model.gguf"))
    kinds = {t.name: t.tensor_type for t in reader.tensors}
    assert kinds["token_embd.weight"] == kinds["blk.0.ffn_down.weight"] == GGML_TYPES[encoding]
    assert kinds["output_norm.weight"] == gguf.GGMLQuantizationType.F32
    assert gguf_block_format(gguf_dir / "model.gguf") == encoding
    # `auto` runs a large model's GGUF in the blocks it stores.
    large = parse_config(full_width_config(32))
    chosen = resolve_encoding(EngineOptions(gguf_dir, quantization_encoding=AUTO), large)
    assert chosen.quantization_encoding == encoding
    from_gguf = load_weights(gguf_dir, config, encoding).tensors
    assert all(np.array_equal(loaded[n], from_gguf[n]) for n in loaded)
    widened = load_weights(gguf_dir, config, "float32").tensors
    for n, blocks in loaded.items():
        if blocks.ndim == 2:
            expected = dequantize(blocks, GGML_TYPES[encoding]).reshape(widened[n].shape)
            assert np.array_equal(dequantize_blocks(blocks, encoding), expected)
            assert np.array_equal(widened[n], expected)


def test_block_encodings_refuse_other_quantizations_and_ragged_rows(tiny_model_dir, tmp_path):
    config = load_config(tiny_model_dir)
    q8_dir = copy_meta(tiny_model_dir, tmp_path / "q8")
    export_gguf(tiny_model_dir, q8_dir / "model.gguf", "q8_0")
    refused = r"tensor transformer\.\S+ is stored as Q8_0; q4_0 weights load from float"
    with pytest.raises(WeightsError, match=refused):
        load_weights(q8_dir, config, "q4_0")
    ragged = make_random_checkpoint(tmp_path / "ragged", d_model=72, n_heads=6, vocab_size=300)
    with pytest.raises(WeightsError, match="not a whole number of 32-blocks"):
        load_weights(ragged, load_config(ragged), "q8_0")
