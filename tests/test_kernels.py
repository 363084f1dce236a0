"""The CPU kernels against NumPy, and their place in the engine.

The engine's decode parity with the float64 reference (tests/test_engine.py) runs through the
kernels on the CPU; these tests check each kernel alone. `replit_gemv` on shapes that exercise
every remainder path (K not a multiple of the SIMD width, N not a multiple of the row block,
several rows); `replit_matmul` on the same kind of ragged shapes against its own arithmetic
(x rounded to W's dtype, exact products, float32 sums), on both of its bfloat16 paths;
`replit_decode_attention`, and `replit_decode_layer` (a whole block of a decode step), on head
layouts of the test, demo and real models, at positions on both sides of the attention's key
blocks, and with products and caches large enough to be split across cores, against attention
and the block written out in float64. The Q8_0 and Q4_0 kernels (`replit_qgemv`,
`replit_qmatmul`, `replit_dequantize`), given GGUF's blocks regrouped as the engine binds
them (`model.graph.block_layout`), on ragged and real-width shapes against NumPy on the weights
widened from the blocks' definition (`testkit.reference.dequantize_blocks`), within the error
their two-part int8 activations allow.
"""

from __future__ import annotations

import functools
import math
import shutil
from collections.abc import Callable

import numpy as np
import pytest
from gguf.quants import quantize
from max.driver import CPU, Buffer
from max.dtype import DType
from max.engine import InferenceSession, Model
from max.graph import DeviceRef, Graph, Module, TensorType, TensorValue

from model.config import ModelConfig, load_config
from model.engine.compiled import graph_key
from model.graph.block_layout import group_rows, grouped_rows
from model.graph.builder import cache_type
from model.graph.kernel_ops import (
    KERNELS_DIR,
    decode_attention,
    decode_layer,
    dequantize,
    gemv,
    matmul,
    quantized_gemv,
    quantized_matmul,
)
from model.graph.options import GraphOptions
from model.weights.encodings import GGML_TYPES, bfloat16_bits_to_float32, float32_to_bfloat16_bits
from model.weights.tensors import BLOCK_FORMATS, BLOCK_WEIGHTS, weight_shapes
from testkit.reference import dequantize_blocks, gelu, layer_norm

# (M, N, K): tiny, ragged, one SIMD vector plus one, a real-model row width, and weights over
# the kernel's 4 MiB threshold in both dtypes, so the cores claim the rows in several chunks, the
# last one short and ending in a row outside the kernel's groups of four.
SHAPES = [
    (1, 1, 1),
    (1, 37, 19),
    (1, 5, 40),
    (1, 67, 17),
    (1, 130, 3072),
    (3, 9, 33),
    (2, 2101, 1027),
]


def compile_with_kernels(module: Module) -> dict[str, Model]:
    """Every graph of `module`, compiled at once with the kernel package."""
    session = InferenceSession(devices=[CPU()])
    return session.init_all(session.compile(module, custom_extensions=[KERNELS_DIR]))


def product_models(
    products: dict[str, tuple[DType, Callable[[TensorValue, TensorValue], TensorValue]]],
) -> dict[str, Model]:
    """One graph per named product x[m, k] @ w[n, k].T with w in the given dtype, with symbolic
    shapes so that one compile serves every shape (uint8 w: rows of blocks, of other widths)."""
    cpu = DeviceRef.CPU()
    module = Module()
    for name, (dtype, product) in products.items():
        input_types = [
            TensorType(DType.float32, ["m", "k"], cpu),
            TensorType(dtype, ["n", "row_bytes" if dtype == DType.uint8 else "k"], cpu),
        ]
        with Graph(
            name, input_types=input_types, custom_extensions=[KERNELS_DIR], module=module
        ) as graph:
            x, w = (value.tensor for value in graph.inputs)
            graph.output(product(x, w))
    return compile_with_kernels(module)


@pytest.fixture(scope="module")
def gemv_models() -> dict[str, Model]:
    return product_models(
        {f"gemv_{dtype.name}": (dtype, gemv) for dtype in (DType.float32, DType.bfloat16)}
    )


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_gemv_matches_numpy(gemv_models, shape, dtype):
    m, n, k = shape
    rng = np.random.default_rng(m * 1000 + n + k)
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32)
    if dtype == "bfloat16":
        bits = float32_to_bfloat16_bits(w)
        w, w_input = bfloat16_bits_to_float32(bits), Buffer.from_numpy(bits).view(DType.bfloat16)
    else:
        w_input = w
    y = gemv_models[f"gemv_{dtype}"].execute(x, w_input)[0].to_numpy()
    expected = x.astype(np.float64) @ w.astype(np.float64).T
    assert y.shape == (m, n)
    # float32 accumulation over k terms: error bound relative to the sum of magnitudes.
    scale = np.abs(x).astype(np.float64) @ np.abs(w).astype(np.float64).T
    assert np.all(np.abs(y - expected) <= 1e-6 * k * scale + 1e-30)


# (M, N, K) for `replit_matmul`, whose tiles are 4 rows of x by 6 rows of W (4 by 4 when it
# widens bfloat16), over k in vectors of 16 float32 or 32 bfloat16 values: a single value; one
# to three rows (no whole tile of x); K one vector plus a tail, and a tail alone; one tile of
# each size and ragged tiles around it; W in several blocks of 48 rows claimed by the cores, the
# last ending in rows outside a whole tile; K long enough to be taken in three slices (float32:
# five), the last ending in a tail; and the 3B model's row width.
MATMUL_SHAPES = [
    (1, 1, 1),
    (2, 7, 31),
    (3, 13, 45),
    (4, 6, 32),
    (5, 11, 16),
    (9, 49, 33),
    (6, 101, 6200),
    (130, 53, 3072),
]
# Graphs of `matmul_models`: weight dtype, and whether bfloat16 may use `vdpbf16ps`.
MATMUL_CASES = {
    "bfloat16": (DType.bfloat16, None),
    "bfloat16-widened": (DType.bfloat16, False),
    "float32": (DType.float32, None),
}


@pytest.fixture(scope="module")
def matmul_models() -> dict[str, Model]:
    return product_models(
        {
            f"matmul_{name}": (dtype, functools.partial(matmul, native=native))
            for name, (dtype, native) in MATMUL_CASES.items()
        }
    )


@pytest.mark.parametrize("shape", MATMUL_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("case", MATMUL_CASES)
def test_matmul_matches_numpy(matmul_models, shape, case):
    m, n, k = shape
    rng = np.random.default_rng(m * 1000 + n + k)
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32)
    if MATMUL_CASES[case][0] == DType.bfloat16:
        bits = float32_to_bfloat16_bits(w)
        w, w_input = bfloat16_bits_to_float32(bits), Buffer.from_numpy(bits).view(DType.bfloat16)
        x_exact = bfloat16_bits_to_float32(float32_to_bfloat16_bits(x))  # what the kernel reads
    else:
        w_input, x_exact = w, x
    y = matmul_models[f"matmul_{case}"].execute(x, w_input)[0].to_numpy()
    expected = x_exact.astype(np.float64) @ w.astype(np.float64).T
    assert y.shape == (m, n)
    # Each output is a float32 sum of k exact products (float32: each product rounded once),
    # about k / 16 deep per lane, then the lanes and slices of k, then a tail of at most 31: a
    # bound on its rounding error relative to the sum of magnitudes. A term dropped or taken
    # twice is about 1 / k of that sum, far above it.
    scale = np.abs(x_exact).astype(np.float64) @ np.abs(w).astype(np.float64).T
    depth = k // 16 + 48
    assert np.all(np.abs(y - expected) <= depth * 2.0**-24 * scale + 1e-30)


def test_the_cpu_engine_decodes_through_its_own_graph(tiny_engine):
    assert tiny_engine._runner.models.decode is not tiny_engine._runner.models.prefill


def test_the_kernel_source_and_fusion_are_part_of_the_compiled_model_key(
    tiny_model_dir, tmp_path, monkeypatch
):
    config = load_config(tiny_model_dir)
    key = graph_key(config, DType.float32, CPU())
    assert key != graph_key(config, DType.float32, CPU(), GraphOptions(cpu_kernels=False))
    changed = tmp_path / "kernels"
    shutil.copytree(KERNELS_DIR, changed)
    with (changed / "gemv.mojo").open("a") as source:
        source.write("\n# changed\n")
    monkeypatch.setattr("model.graph.kernel_ops.KERNELS_DIR", changed)
    changed_key = graph_key(config, DType.float32, CPU())
    assert changed_key != key
    unfused = GraphOptions(fused_block_bytes=0)  # which blocks are one kernel
    assert graph_key(config, DType.float32, CPU(), unfused) != changed_key
    products = GraphOptions(bfloat16_dot=not GraphOptions().bfloat16_dot)  # which one-row kernel
    assert graph_key(config, DType.float32, CPU(), products) != changed_key


# (head_dim, query heads per kv head, kv heads): the test model's, the demo model's, plain
# multi-head attention, and the real model's (whose products and 1000-position cache are split
# across all cores). Each in float32, the demo's and the real model's also with bfloat16 weights.
HEAD_LAYOUTS = [(16, 3, 2), (32, 4, 2), (64, 1, 4), (128, 3, 8)]
BLOCK_CASES = [(layout, DType.float32) for layout in HEAD_LAYOUTS] + [
    ((32, 4, 2), DType.bfloat16),
    ((128, 3, 8), DType.bfloat16),
]
BLOCK_PREFIX = "transformer.blocks.0."


def block_case_id(case) -> str:
    layout, dtype = case
    return "x".join(map(str, layout)) + "-" + dtype.name


def layout_config(head_dim: int, group: int, kv_heads: int) -> ModelConfig:
    n_heads = group * kv_heads
    d_model = n_heads * head_dim
    return ModelConfig(
        d_model=d_model,
        n_heads=n_heads,
        kv_n_heads=kv_heads,
        n_layers=1,
        vocab_size=16,
        max_seq_len=4096,
        ffn_hidden_size=d_model + 5,  # not a whole number of SIMD vectors
        alibi_bias_max=8.0,
        layer_norm_eps=1e-5,
    )


@pytest.fixture(scope="module")
def attention_models() -> dict[tuple[int, int, int], Model]:
    """One graph per head layout (head_dim and group are kernel parameters), one compile."""
    cpu = DeviceRef.CPU()
    module = Module()
    names = {layout: "attention_{}_{}_{}".format(*layout) for layout in HEAD_LAYOUTS}
    for layout, name in names.items():
        config = layout_config(*layout)
        cache = cache_type(config, cpu)
        input_types = [
            TensorType(DType.float32, [1, config.qkv_size], cpu),
            TensorType(DType.int64, [1], cpu),
            cache,
            cache,
        ]
        with Graph(
            name, input_types=input_types, custom_extensions=[KERNELS_DIR], module=module
        ) as graph:
            qkv, position, k_cache, v_cache = graph.inputs
            out = decode_attention(
                qkv.tensor, position.tensor, k_cache.buffer, v_cache.buffer, config
            )
            graph.output(out)
    models = compile_with_kernels(module)
    return {layout: models[name] for layout, name in names.items()}


@pytest.fixture(scope="module")
def block_models() -> dict[tuple, Model]:
    """One graph per case (head_dim, group and the weights' dtype make the kernel), one compile."""
    cpu = DeviceRef.CPU()
    module = Module()
    names = {case: "block_" + block_case_id(case) for case in BLOCK_CASES}
    for (layout, dtype), name in names.items():
        config = layout_config(*layout)
        shapes = weight_shapes(config)
        cache = cache_type(config, cpu)
        input_types = [
            TensorType(DType.float32, [1, config.d_model], cpu),
            *[TensorType(dtype, shapes[BLOCK_PREFIX + w], cpu) for w in BLOCK_WEIGHTS],
            TensorType(DType.int64, [1], cpu),
            cache,
            cache,
        ]
        with Graph(
            name, input_types=input_types, custom_extensions=[KERNELS_DIR], module=module
        ) as graph:
            h, *weights, position, k_cache, v_cache = graph.inputs
            out = decode_layer(
                h.tensor,
                [w.tensor for w in weights],
                position.tensor,
                k_cache.buffer,
                v_cache.buffer,
                config,
            )
            graph.output(out)
    models = compile_with_kernels(module)
    return {case: models[name] for case, name in names.items()}


def random_block_weights(config: ModelConfig, dtype: DType, rng) -> tuple[list, list]:
    """The kernel's inputs (bfloat16 as raw bits) and the exact values they hold, as float64."""
    inputs, exact = [], []
    for name in BLOCK_WEIGHTS:
        shape = weight_shapes(config)[BLOCK_PREFIX + name]
        w = rng.standard_normal(shape, dtype=np.float32)
        w = 1.0 + 0.1 * w if len(shape) == 1 else w / math.sqrt(shape[1])
        if dtype == DType.bfloat16:
            bits = float32_to_bfloat16_bits(w)
            inputs.append(Buffer.from_numpy(bits).view(DType.bfloat16))
            exact.append(bfloat16_bits_to_float32(bits).astype(np.float64))
        else:
            inputs.append(w)
            exact.append(w.astype(np.float64))
    return inputs, exact


def reference_attention(config: ModelConfig, qkv, keys, values, position: int) -> np.ndarray:
    """MPT attention of one query at `position` over keys 0..position, in float64."""
    hd, group = config.head_dim, config.n_heads // config.kv_n_heads
    q = qkv[: config.d_model].reshape(config.n_heads, hd)
    out = np.empty((config.n_heads, hd))
    for head in range(config.n_heads):
        k = keys[head // group, : position + 1]
        v = values[head // group, : position + 1]
        distance = np.arange(position + 1) - position
        scores = k @ q[head] / math.sqrt(hd) + config.alibi_slopes()[head] * distance
        weights = np.exp(scores - scores.max())
        out[head] = weights @ v / weights.sum()
    return out.reshape(-1)


def reference_block(config: ModelConfig, h, weights, keys, values, position: int):
    """The block in float64: the new residual stream, and the key and value rows it caches."""
    norm_1, w_qkv, w_out, norm_2, w_up, w_down = weights
    kv_width = config.kv_n_heads * config.head_dim
    qkv = layer_norm(h, norm_1, config.layer_norm_eps) @ w_qkv.T
    key = qkv[config.d_model : config.d_model + kv_width].reshape(config.kv_n_heads, -1)
    value = qkv[config.d_model + kv_width :].reshape(config.kv_n_heads, -1)
    keys, values = keys.copy(), values.copy()
    keys[:, position], values[:, position] = key, value
    h = h + reference_attention(config, qkv, keys, values, position) @ w_out.T
    h = h + gelu(layer_norm(h, norm_2, config.layer_norm_eps) @ w_up.T) @ w_down.T
    return h, key, value


@pytest.mark.parametrize("case", BLOCK_CASES, ids=block_case_id)
def test_decode_layer_matches_the_float64_block(block_models, case):
    layout, dtype = case
    config = layout_config(*layout)
    capacity = 1001 if layout[0] == 128 else 300
    rng = np.random.default_rng(sum(layout))
    kvh, hd = config.kv_n_heads, config.head_dim
    weight_inputs, weights = random_block_weights(config, dtype, rng)
    for position in (0, 1, 63, 64, 65, 200, capacity - 1):
        h = rng.standard_normal((1, config.d_model), dtype=np.float32)
        keys = rng.standard_normal((kvh, capacity, hd), dtype=np.float32)
        values = rng.standard_normal((kvh, capacity, hd), dtype=np.float32)
        k_buffer, v_buffer = Buffer.from_numpy(keys.copy()), Buffer.from_numpy(values.copy())
        position_input = np.array([position], np.int64)
        out = block_models[case].execute(h, *weight_inputs, position_input, k_buffer, v_buffer)
        expected, key, value = reference_block(
            config, h[0].astype(np.float64), weights, keys, values, position
        )
        assert out[0].to_numpy().shape == (1, config.d_model)
        np.testing.assert_allclose(out[0].to_numpy()[0], expected, rtol=0, atol=2e-5)
        # The kernel stores the new key and value rows at `position`, and nothing else.
        for buffer, before, row in ((k_buffer, keys, key), (v_buffer, values, value)):
            after = buffer.to_numpy()
            np.testing.assert_allclose(after[:, position], row, rtol=0, atol=2e-5)
            after[:, position] = before[:, position]
            assert np.array_equal(after, before)


@pytest.mark.parametrize("layout", HEAD_LAYOUTS, ids=lambda layout: "x".join(map(str, layout)))
def test_decode_attention_matches_float64_attention(attention_models, layout):
    config = layout_config(*layout)
    capacity = 1001 if layout[0] == 128 else 300
    rng = np.random.default_rng(sum(layout))
    kvh, hd = config.kv_n_heads, config.head_dim
    for position in (0, 1, 63, 64, 65, 200, capacity - 1):
        qkv = rng.standard_normal(config.qkv_size, dtype=np.float32)
        keys = rng.standard_normal((kvh, capacity, hd), dtype=np.float32)
        values = rng.standard_normal((kvh, capacity, hd), dtype=np.float32)
        k_buffer, v_buffer = Buffer.from_numpy(keys.copy()), Buffer.from_numpy(values.copy())
        out = (
            attention_models[layout]
            .execute(qkv[None, :], np.array([position], np.int64), k_buffer, v_buffer)[0]
            .to_numpy()
        )
        # The kernel stores the new key and value rows at `position`, and nothing else.
        keys[:, position] = qkv[config.d_model : config.d_model + kvh * hd].reshape(kvh, hd)
        values[:, position] = qkv[config.d_model + kvh * hd :].reshape(kvh, hd)
        assert np.array_equal(k_buffer.to_numpy(), keys)
        assert np.array_equal(v_buffer.to_numpy(), values)
        expected = reference_attention(
            config, qkv.astype(np.float64), keys.astype(np.float64), values, position
        )
        assert out.shape == (1, config.d_model)
        np.testing.assert_allclose(out[0], expected, rtol=0, atol=2e-5)


# (M, N, K) for the block-quantized products, K a whole number of 32-weight blocks: one block;
# N not a multiple of the kernels' groups of 16 rows (1, 37, 9, ...), so W is padded; M outside
# the kernels' groups of rows (up to 4 at once one-row, 4 a tile many-row: 5 = 4 + 1, 7 = 4 + 3,
# 9, 130 = 32 * 4 + 2); W over the one-row kernel's 4 MiB threshold in Q8_0 and Q4_0, so the
# cores claim its groups in chunks with a short last one; W in several 48-row panels with a
# ragged last one (101, 130) and panels of fewer groups; and the 3B model's row width. Up to 4
# rows of x, the many-row product takes the one-row products.
QUANTIZED_SHAPES = [
    (1, 1, 32),
    (1, 37, 64),
    (3, 9, 96),
    (1, 130, 3072),
    (2, 4099, 2048),
    (5, 11, 32),
    (4, 33, 64),
    (7, 130, 3104),
    (8, 67, 6208),
    (9, 101, 6208),
    (130, 53, 3072),
]
QUANTIZED_PRODUCTS = {"gemv": quantized_gemv, "matmul": quantized_matmul}


@pytest.fixture(scope="module")
def quantized_models() -> dict[str, Model]:
    cpu = DeviceRef.CPU()
    module = Module()
    for fmt in BLOCK_FORMATS.values():
        name = f"dequantize_{fmt.name}"
        input_types = [
            TensorType(DType.uint8, ["n", "row_bytes"], cpu),
            TensorType(DType.int64, ["m"], cpu),
            TensorType(DType.float32, ["k"], cpu),  # only its length: the rows' K
        ]
        with Graph(
            name, input_types=input_types, custom_extensions=[KERNELS_DIR], module=module
        ) as graph:
            w, tokens, row = (value.tensor for value in graph.inputs)
            graph.output(dequantize(w, tokens, row.shape[0], fmt.bits))
    products = product_models(
        {
            f"{name}_{fmt.name}": (DType.uint8, functools.partial(product, bits=fmt.bits))
            for name, product in QUANTIZED_PRODUCTS.items()
            for fmt in BLOCK_FORMATS.values()
        }
    )
    return products | compile_with_kernels(module)


@pytest.mark.parametrize("shape", QUANTIZED_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("fmt", BLOCK_FORMATS)
@pytest.mark.parametrize("product", QUANTIZED_PRODUCTS)
def test_quantized_products_match_numpy_on_the_dequantized_weights(
    quantized_models, shape, fmt, product
):
    m, n, k = shape
    rng = np.random.default_rng(m * 1000 + n + k)
    x = rng.standard_normal((m, k), dtype=np.float32)
    blocks = quantize(rng.standard_normal((n, k), dtype=np.float32), GGML_TYPES[fmt])
    w = dequantize_blocks(blocks, fmt)  # exact in float32, and what the kernels multiply by
    grouped = group_rows(blocks, BLOCK_FORMATS[fmt])
    y = quantized_models[f"{product}_{fmt}"].execute(x, grouped)[0].to_numpy()
    assert y.shape == (m, grouped_rows(n))
    # The rows that pad W to whole groups are zero blocks.
    assert not y[:, n:].any()
    assert_within_the_products_bound(y[:, :n], x, w)


def assert_within_the_products_bound(y: np.ndarray, x: np.ndarray, w: np.ndarray) -> None:
    """y = x @ w.T as the block products compute it, checked against float64."""
    m, k = x.shape
    expected = x.astype(np.float64) @ w.astype(np.float64).T
    # Both products take each value of x to 1/256 of a step of its block's int8 grid (the
    # block's largest |x| / 127), rounding included, multiply in integers and sum the blocks
    # in float32: a bound relative to the sum of magnitudes that a block dropped, taken twice
    # or read with the wrong scale or nibble order is far above.
    magnitudes = np.abs(w).astype(np.float64).T
    bound = (k // 16 + 48) * 2.0**-24 * (np.abs(x).astype(np.float64) @ magnitudes) + 1e-30
    largest = np.abs(x).reshape(m, -1, 32).max(axis=-1)
    step = np.repeat(largest / 127 / 256, 32, axis=-1).astype(np.float64)
    bound += step @ magnitudes
    assert np.all(np.abs(y - expected) <= bound)


@pytest.mark.parametrize("product", QUANTIZED_PRODUCTS)
def test_q8_0_products_take_the_extreme_quants(quantized_models, product):
    # Quants of -128 and 127 against activations at their block's largest or a half step off
    # the int8 grid: the largest products of bytes either path forms, where a sum of two that
    # saturated 16 bits, or a negation of -128, would be far off.
    m, n, k = 5, 37, 256
    rng = np.random.default_rng(11)
    quants = rng.choice(np.array([-128, -127, 127], np.int8), size=(n, k // 32, 32))
    scales = rng.uniform(0.01, 0.1, size=(n, k // 32, 1)).astype(np.float16)
    blocks = np.concatenate([scales.view(np.uint8), quants.view(np.uint8)], axis=-1)
    blocks = blocks.reshape(n, -1)
    d = rng.uniform(0.5, 2.0, size=(m, k // 32, 1))
    grid = rng.integers(-126, 127, size=(m, k // 32, 32)) + rng.choice(
        [-0.499, 0.499, 0.0], size=(m, k // 32, 32)
    )
    grid[:, :, 0] = 127
    x = (grid * d).reshape(m, k).astype(np.float32)
    y = quantized_models[f"{product}_q8_0"].execute(x, group_rows(blocks, BLOCK_FORMATS["q8_0"]))
    assert_within_the_products_bound(y[0].to_numpy()[:, :n], x, dequantize_blocks(blocks, "q8_0"))


@pytest.mark.parametrize("fmt", BLOCK_FORMATS)
def test_dequantized_rows_are_the_blocks_weights(quantized_models, fmt):
    rng = np.random.default_rng(7)
    blocks = quantize(rng.standard_normal((37, 3072), dtype=np.float32), GGML_TYPES[fmt])
    tokens = np.array([5, 0, 36, 17, 5, 16, 15], dtype=np.int64)
    rows = quantized_models[f"dequantize_{fmt}"].execute(
        group_rows(blocks, BLOCK_FORMATS[fmt]), tokens, np.zeros(3072, np.float32)
    )
    np.testing.assert_array_equal(rows[0].to_numpy(), dequantize_blocks(blocks, fmt)[tokens])


def test_quantized_products_refuse_rows_that_are_not_whole_blocks(quantized_models):
    x = np.ones((1, 40), dtype=np.float32)
    blocks = np.zeros((3, 34), dtype=np.uint8)
    with pytest.raises(Exception, match="multiple of 32"):
        quantized_models["gemv_q8_0"].execute(x, blocks)


def test_quantized_products_refuse_rows_not_in_groups_of_16(quantized_models):
    x = np.ones((1, 32), dtype=np.float32)
    gguf_rows = np.zeros((3, 34), dtype=np.uint8)  # GGUF's layout, not the kernels'
    with pytest.raises(Exception, match="groups of 16"):
        quantized_models["matmul_q8_0"].execute(x, gguf_rows)


def test_dequantize_refuses_a_token_outside_the_rows(quantized_models):
    grouped = np.zeros((16, 18), dtype=np.uint8)
    with pytest.raises(Exception, match="token 16 outside"):
        quantized_models["dequantize_q4_0"].execute(
            grouped, np.array([3, 16], np.int64), np.zeros(32, np.float32)
        )
