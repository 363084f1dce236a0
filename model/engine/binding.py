"""The weights read, laid out as the compiled graphs take them, and bound to those graphs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from max.driver import Buffer, Device
from max.dtype import DType
from max.engine import CompiledModel, InferenceSession, Model

from model.config import ModelConfig
from model.graph.block_layout import group_rows
from model.graph.builder import DECODE_GRAPH, PREFILL_GRAPH, VERIFY_GRAPH
from model.graph.options import GraphOptions
from model.progress import BINDING, LoadProgress, ProgressCallback
from model.weights.quantized_cache import load_quantized_weights
from model.weights.tensors import BLOCK_FORMATS

WeightRegistry = dict[str, np.ndarray | Buffer]


@dataclass(frozen=True)
class BoundModels:
    """The compiled graphs with the weights bound, one per kind of run."""

    prefill: Model
    decode: Model  # the prefill model where no decode graph was built (the GPU)
    verify: Model
    weights: WeightRegistry  # the models may alias host arrays: kept alive with them


def weight_registry(weights: dict[str, np.ndarray], graph: GraphOptions) -> WeightRegistry:
    """The arrays as the graph reads them: block rows regrouped for the CPU kernels, and
    bfloat16 (held as uint16, which NumPy lacks) viewed as MAX's bfloat16."""
    if graph.block_format is not None:
        block_format = BLOCK_FORMATS[graph.block_format]
        for name, array in weights.items():
            if array.ndim == 2:  # one matrix at a time: the GGUF rows are freed as it goes
                weights[name] = group_rows(array, block_format)
    return {
        name: Buffer.from_numpy(array).view(DType.bfloat16) if array.dtype == np.uint16 else array
        for name, array in weights.items()
    }


def bind_weights(
    compiled: CompiledModel,
    model_dir: Path,
    config: ModelConfig,
    encoding: str,
    graph: GraphOptions,
    device: Device,
    cache_dir: Path,
    progress: ProgressCallback,
) -> tuple[BoundModels, str]:
    """The bound models, and where the weights came from (as `load_quantized_weights` says)."""
    # On the CPU, MAX reads the weights where they lie: in the file's mapping, so that a
    # restart finds them in the page cache instead of copying gigabytes into memory that
    # the process must first be given (bench/results/restart).
    weights, source = load_quantized_weights(
        model_dir, config, encoding, cache_dir, progress=progress
    )
    registry = weight_registry(weights, graph)
    session = InferenceSession(devices=[device])
    progress(LoadProgress(BINDING, "binding weights to the compiled model"))
    models = session.init_all(compiled, weights_registry=registry)
    prefill = models[PREFILL_GRAPH]
    # One new token runs the decode graph where one was built (CPU), else the same graph.
    decode = models.get(DECODE_GRAPH, prefill)
    return BoundModels(prefill, decode, models[VERIFY_GRAPH], registry), source
