"""The Replit Code (MPT) forward pass as MAX graphs, with an in-place KV cache.

One graph serves both prefill and decode: `seq_len` (new tokens), `total_len` (cached plus new
tokens) and the cache capacity are symbolic, so a single compiled model runs any prompt length
and any context length. Each layer's K and V live in preallocated buffers that the graph writes
at `[start, start + seq_len)` and reads back as `[0, total_len)`; nothing is concatenated or
copied back to the host between steps. Only the last position's logits leave the graph.

On the CPU a second graph, fixed to one new token, serves decode with the kernels
(`model.graph.ops` says which). Both graphs live in one `Module`, compiled together and bound
to the same weights.

A third graph, VERIFY_GRAPH, checks a speculative draft: the last accepted token and up to a
few drafted ones go through the cache as in prefill, and it returns the logits of every row,
so one run tells how many drafted tokens the model would have chosen itself.
"""

from __future__ import annotations

from max.dtype import DType
from max.graph import BufferType, DeviceRef, Graph, Module, TensorType, ops

from model.config import ModelConfig
from model.graph.ops import LayerCache, graph_ops, module_extensions
from model.graph.options import GraphOptions
from model.weights.tensors import EMBEDDING, FINAL_NORM

# Bump when the graphs (traced here and by `model.graph.ops`) change in a way the
# compiled-model cache must notice.
GRAPH_VERSION = 12

PREFILL_GRAPH = "replit_mpt"
DECODE_GRAPH = "replit_mpt_decode"
VERIFY_GRAPH = "replit_mpt_verify"


def cache_type(config: ModelConfig, device: DeviceRef) -> BufferType:
    """One layer's K or V cache: [kv_n_heads, capacity, head_dim] float32, capacity symbolic."""
    return BufferType(DType.float32, [config.kv_n_heads, "capacity", config.head_dim], device)


def build_graphs(
    config: ModelConfig, dtype: DType, device: DeviceRef, options: GraphOptions
) -> Graph:
    """The graphs to compile together: PREFILL_GRAPH and VERIFY_GRAPH always, DECODE_GRAPH
    on the CPU.

    Returns the last graph built, whose `module` holds them all: `session.compile` of that
    graph compiles the module with the kernel declarations the graphs already loaded, so the
    compiler does not load every kernel package again (about a third of a small module's
    compile time here). On a GPU (or with `cpu_kernels` off) the prefill graph serves decode
    too. Call it on the thread that imported MAX: MLIR's current context is per thread, and
    `Module` (unlike `Graph`) does not enter MAX's default context on other threads.
    """
    module = Module()
    build_graph(config, dtype, device, options, module=module)
    if module_extensions(device, options):
        build_graph(config, dtype, device, options, module=module, decode=True)
    return build_graph(config, dtype, device, options, module=module, verify=True)


def build_graph(
    config: ModelConfig,
    dtype: DType,
    device: DeviceRef,
    options: GraphOptions,
    *,
    module: Module | None = None,
    decode: bool = False,
    verify: bool = False,
) -> Graph:
    """Traces the model for `config` with weights in `dtype` on `device`.

    Inputs: `tokens` [seq_len] int64; `start` (host scalar) the cache position of the first new
    token; `rel_pos` [seq_len, total_len] float32 (key minus query position, -inf when masked);
    then the K and V cache buffers of each layer, [kv_n_heads, capacity, head_dim] float32.
    Output: float32 logits [vocab_size] of the last new token. With `decode`, seq_len is 1 and
    the graph is named DECODE_GRAPH (whose `rel_pos` the kernel path leaves unread). With
    `verify`, it is VERIFY_GRAPH and outputs the logits of every new token, [seq_len,
    vocab_size]. Which ops trace it is `graph_ops`'s choice.
    """
    b = graph_ops(config, dtype, device, options, decode=decode, verify=verify)
    seq_len: int | str = 1 if decode else "seq_len"
    name = DECODE_GRAPH if decode else VERIFY_GRAPH if verify else PREFILL_GRAPH
    input_types = [
        TensorType(DType.int64, [seq_len], device),
        TensorType(DType.int64, [1], DeviceRef.CPU()),
        TensorType(DType.float32, [seq_len, "total_len"], device),
        *[cache_type(config, device)] * (2 * config.n_layers),
    ]
    with Graph(
        name,
        input_types=input_types,
        custom_extensions=module_extensions(device, options),
        module=module,
    ) as graph:
        tokens, start, rel_pos, *caches = graph.inputs
        tokens, start, rel_pos = tokens.tensor, start.tensor, rel_pos.tensor
        end = start + ops.shape_to_tensor([tokens.shape[0]])
        start, end = start.reshape([]), end.reshape([])

        h = b.embed(tokens)
        for n in range(config.n_layers):
            cache = LayerCache(start, end, rel_pos, caches[2 * n].buffer, caches[2 * n + 1].buffer)
            h = b.block(h, n, cache)

        if verify:
            logits = b.linear(b.layer_norm(h, FINAL_NORM), EMBEDDING)
        else:
            last = b.layer_norm(h[(slice(-1, None), 1), :], FINAL_NORM)
            logits = b.linear(last, EMBEDDING, one_row=True).reshape([config.vocab_size])
        graph.output(logits)
    return graph
