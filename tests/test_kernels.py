"""The `replit_gemv` CPU kernel against NumPy, and its place in the engine.

The engine's decode parity with the float64 reference (tests/test_engine.py) runs through the
kernel on the CPU; these tests check the kernel alone on shapes that exercise every remainder
path (K not a multiple of the SIMD width, N not a multiple of the row block, several rows).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from max.driver import CPU, Buffer
from max.dtype import DType
from max.engine import InferenceSession, Model
from max.graph import DeviceRef, Graph, Module, TensorType

from model.compiled import graph_key
from model.config import load_config
from model.graph import KERNELS_DIR, gemv
from model.weights import bfloat16_bits_to_float32, float32_to_bfloat16_bits

# (M, N, K): tiny, ragged, one SIMD vector plus one, a real-model row width, and weights over
# the kernel's 4 MiB threshold in both dtypes, so the rows are split across threads.
SHAPES = [
    (1, 1, 1),
    (1, 37, 19),
    (1, 5, 40),
    (1, 67, 17),
    (1, 130, 3072),
    (3, 9, 33),
    (2, 2101, 1027),
]


@pytest.fixture(scope="module")
def gemv_models() -> dict[str, Model]:
    """One graph per weight dtype, with symbolic shapes so that one compile serves all."""
    cpu = DeviceRef.CPU()
    module = Module()
    for dtype in (DType.float32, DType.bfloat16):
        input_types = [
            TensorType(DType.float32, ["m", "k"], cpu),
            TensorType(dtype, ["n", "k"], cpu),
        ]
        with Graph(
            f"gemv_{dtype.name}",
            input_types=input_types,
            custom_extensions=[KERNELS_DIR],
            module=module,
        ) as graph:
            x, w = (value.tensor for value in graph.inputs)
            graph.output(gemv(x, w))
    session = InferenceSession(devices=[CPU()])
    return session.init_all(session.compile(module, custom_extensions=[KERNELS_DIR]))


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


def test_the_cpu_engine_decodes_through_its_own_graph(tiny_engine):
    assert tiny_engine._decode_model is not tiny_engine._prefill_model


def test_the_kernel_source_is_part_of_the_compiled_model_key(tiny_model_dir, tmp_path, monkeypatch):
    config = load_config(tiny_model_dir)
    key = graph_key(config, DType.float32, CPU())
    assert key != graph_key(config, DType.float32, CPU(), cpu_kernels=False)
    changed = tmp_path / "kernels"
    shutil.copytree(KERNELS_DIR, changed)
    with (changed / "gemv.mojo").open("a") as source:
        source.write("\n# changed\n")
    monkeypatch.setattr("model.graph.KERNELS_DIR", changed)
    assert graph_key(config, DType.float32, CPU()) != key
