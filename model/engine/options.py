"""What an engine is asked to be, and the checks that refuse an option before a load of
minutes rather than after it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from max.dtype import DType

from model.config import ModelConfig
from model.gguf_metadata import model_gguf
from model.graph.options import DEFAULT_GRAPH, GraphOptions, encoding_graph
from model.weights.encodings import ENCODINGS
from model.weights.gguf_tensors import gguf_block_format
from model.weights.tensors import BLOCK_FORMATS, stored_shapes


class EngineError(RuntimeError):
    """The engine cannot be built as asked (no accelerator, bad option)."""


class OptionError(EngineError):
    """An option the engine cannot honour, named by its `EngineOptions` field so that each
    front door can name it in its own terms (the CLI as a flag)."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option} {problem}")
        self.option = option
        self.problem = problem


# The encoding chosen for the machine and the model (`machine_encoding`).
AUTO = "auto"
# Models with at least this many weights read more per decoded token than any CPU cache
# holds, so their decode is bound by memory reads, which 4-bit blocks cut to about a seventh.
QUANTIZE_FROM_WEIGHTS = 1_000_000_000


def machine_encoding(config: ModelConfig, use_gpu: bool, stored_blocks: str | None = None) -> str:
    """What `auto` means: bfloat16 on a GPU; on a CPU, for a model large enough that memory
    reads bound its decode (the 3B), the blocks its GGUF file stores (`stored_blocks`), which
    then run as they lie, else q4_0; float32 for small models, whose weights stay in the
    caches, so that quantizing them would cost accuracy for nothing."""
    if use_gpu:
        return "bfloat16"
    if config.weight_count < QUANTIZE_FROM_WEIGHTS:
        return "float32"
    return stored_blocks or "q4_0"


@dataclass(frozen=True)
class EngineOptions:
    model_dir: Path
    quantization_encoding: str = "float32"
    max_length: int = 512
    max_cache_batch_size: int = 4
    use_gpu: bool = False
    serialized_model_path: Path | None = None
    save_to_serialized_model_path: Path | None = None
    cache_dir: Path | None = None  # compiled models and weights quantized at load
    prefix_reuse: bool = True
    # Drafted tokens checked in each verify run of greedy generation; 0 turns speculation off.
    # None: the default for the graph that decodes, up to 4 a run as measured to pay
    # (`model.engine.speculation`).
    speculative_tokens: int | None = None
    graph: GraphOptions = DEFAULT_GRAPH


def check_counts(options: EngineOptions) -> None:
    """Refuses counts that no model could honour, before anything is read."""
    if options.max_cache_batch_size < 1:
        raise OptionError("max_cache_batch_size", "must be at least 1")
    if options.speculative_tokens is not None and options.speculative_tokens < 0:
        raise OptionError("speculative_tokens", "must be at least 0")


def check_max_length(options: EngineOptions, config: ModelConfig) -> None:
    """Refuses a context the model was not trained for, or too short for one generated token."""
    if not 2 <= options.max_length <= config.max_seq_len:
        raise OptionError(
            "max_length",
            f"must be between 2 and the model's max_seq_len {config.max_seq_len}, "
            f"got {options.max_length}",
        )


def resolve_encoding(options: EngineOptions, config: ModelConfig) -> EngineOptions:
    """`options` with `auto` replaced by the encoding it means for this model and device."""
    if options.quantization_encoding != AUTO:
        return options
    gguf_file = model_gguf(options.model_dir)
    stored = gguf_block_format(gguf_file) if gguf_file is not None else None
    encoding = machine_encoding(config, options.use_gpu, stored)
    return replace(options, quantization_encoding=encoding)


def graph_encoding(options: EngineOptions, config: ModelConfig) -> tuple[DType, GraphOptions]:
    """The graph's dtype and options for the weight encoding, refused before a compile of
    minutes where the graph cannot take it."""
    encoding = options.quantization_encoding
    if encoding not in ENCODINGS:
        choices = ", ".join((*ENCODINGS, AUTO))
        raise OptionError("quantization_encoding", f"must be one of {choices}")
    dtype, graph = encoding_graph(encoding, options.graph)
    if graph.block_format is not None:
        if options.use_gpu or not graph.cpu_kernels:
            raise OptionError(
                "quantization_encoding",
                f"{encoding} runs on the CPU kernels only; the GPU (and the CPU without "
                "its kernels) takes float32 or bfloat16",
            )
        try:
            stored_shapes(config, BLOCK_FORMATS[encoding])
        except ValueError as error:
            raise OptionError("quantization_encoding", f"{encoding}: {error}") from None
    return dtype, graph
