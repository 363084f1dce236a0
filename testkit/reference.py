"""An independent float64 NumPy implementation of the MPT forward pass, written from the math.

It shares nothing with the MAX graph but the tensor names of the checkpoint format, so that a
parity test compares two implementations rather than one implementation with itself.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import quantize
from safetensors.numpy import load_file

_TYPES = {"q8_0": GGMLQuantizationType.Q8_0, "q4_0": GGMLQuantizationType.Q4_0}


def _slopes(n_heads: int, alibi_bias_max: float) -> np.ndarray:
    n2 = 1 << (n_heads - 1).bit_length()
    m = np.arange(1, n2 + 1, dtype=np.float64) * (alibi_bias_max / n2)
    slope = 2.0**-m
    if n2 != n_heads:
        slope = np.concatenate([slope[1::2], slope[::2]])[:n_heads]
    return slope


def layer_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight


def gelu(x: np.ndarray) -> np.ndarray:
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


class ReferenceMPT:
    """Reads a Hugging Face MPT directory and computes logits for every position in float64."""

    def __init__(
        self, model_dir: Path, round_to_bfloat16: bool = False, blocks: str | None = None
    ) -> None:
        """`blocks` ("q8_0" or "q4_0") runs on the weights those blocks hold: every matrix
        quantized as the engine's loader quantizes it, then widened by `dequantize_blocks`."""
        cfg = json.loads((Path(model_dir) / "config.json").read_text())
        attn = cfg["attn_config"]
        self.d = cfg["d_model"]
        self.n_heads = cfg["n_heads"]
        self.kv_heads = attn.get("kv_n_heads", self.n_heads)
        self.n_layers = cfg["n_layers"]
        self.eps = cfg.get("layer_norm_epsilon", 1e-5)
        self.hd = self.d // self.n_heads
        self.slopes = _slopes(self.n_heads, attn.get("alibi_bias_max", 8))
        tensors = load_file(str(Path(model_dir) / "model.safetensors"))
        if round_to_bfloat16:
            tensors = {k: _round_bf16(v) for k, v in tensors.items()}
        if blocks is not None:
            tensors = {
                k: v if v.ndim == 1 else dequantize_blocks(quantize(v, _TYPES[blocks]), blocks)
                for k, v in tensors.items()
            }
        self.w = {k: v.astype(np.float64) for k, v in tensors.items()}

    def logits(self, tokens: list[int]) -> np.ndarray:
        w = self.w
        t = len(tokens)
        h = w["transformer.wte.weight"][np.asarray(tokens)]
        group = self.n_heads // self.kv_heads
        kv = self.kv_heads * self.hd
        i = np.arange(t)[:, None]
        j = np.arange(t)[None, :]
        causal = np.where(j <= i, 0.0, -np.inf)
        for n in range(self.n_layers):
            p = f"transformer.blocks.{n}."
            a = layer_norm(h, w[p + "norm_1.weight"], self.eps)
            qkv = a @ w[p + "attn.Wqkv.weight"].T
            q = qkv[:, : self.d].reshape(t, self.n_heads, self.hd)
            k = qkv[:, self.d : self.d + kv].reshape(t, self.kv_heads, self.hd)
            v = qkv[:, self.d + kv :].reshape(t, self.kv_heads, self.hd)
            out = np.empty((t, self.n_heads, self.hd))
            for head in range(self.n_heads):
                kv_head = head // group
                s = q[:, head] @ k[:, kv_head].T / math.sqrt(self.hd)
                s = s + self.slopes[head] * (j - i) + causal
                s = s - s.max(-1, keepdims=True)
                p_attn = np.exp(s)
                p_attn /= p_attn.sum(-1, keepdims=True)
                out[:, head] = p_attn @ v[:, kv_head]
            h = h + out.reshape(t, self.d) @ w[p + "attn.out_proj.weight"].T
            m = layer_norm(h, w[p + "norm_2.weight"], self.eps)
            h = h + gelu(m @ w[p + "ffn.up_proj.weight"].T) @ w[p + "ffn.down_proj.weight"].T
        h = layer_norm(h, w["transformer.norm_f.weight"], self.eps)
        return h @ w["transformer.wte.weight"].T

    def greedy(self, tokens: list[int], max_new_tokens: int, eos_id: int | None) -> list[int]:
        out: list[int] = []
        context = list(tokens)
        for _ in range(max_new_tokens):
            token = int(np.argmax(self.logits(context)[-1]))
            if token == eos_id:
                break
            out.append(token)
            context.append(token)
        return out


def _round_bf16(x: np.ndarray) -> np.ndarray:
    """Rounds float32 values to the nearest bfloat16 (ties to even), kept as float32."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return rounded.astype(np.uint32).view(np.float32)


@dataclass
class Expected:
    """What greedy decoding must produce, computed by the reference implementation."""

    prompt_ids: list[int]
    ids: list[int]
    text: str
    finish_reason: str


def greedy_answers(reference: ReferenceMPT, tokenizer: Any) -> Callable[[str, int], Expected]:
    """A memoized function from (prompt, max_tokens) to the reference's greedy answer, with
    the prompt encoded by `tokenizer` (a Hugging Face `tokenizers.Tokenizer`)."""
    cache: dict[tuple[str, int], Expected] = {}
    eos = tokenizer.token_to_id("<|endoftext|>")

    def expected(prompt: str, max_tokens: int) -> Expected:
        if (prompt, max_tokens) not in cache:
            prompt_ids = tokenizer.encode(prompt, add_special_tokens=False).ids
            ids = reference.greedy(prompt_ids, max_tokens, eos)
            finish = "length" if len(ids) == max_tokens else "stop"
            cache[prompt, max_tokens] = Expected(prompt_ids, ids, tokenizer.decode(ids), finish)
        return cache[prompt, max_tokens]

    return expected


def dequantize_blocks(data: np.ndarray, blocks: str) -> np.ndarray:
    """The float32 [N, K] weights of uint8 rows [N, K / 32 * block bytes] of llama.cpp blocks,
    from the formats' definition: a float16 scale d, then Q8_0's 32 int8 quants q (weight
    q * d), or Q4_0's 16 bytes whose byte j holds weight j in its low nibble and weight j + 16
    in its high one, each an unsigned n with weight (n - 8) * d.
    """
    size = {"q8_0": 34, "q4_0": 18}[blocks]
    rows = data.shape[0]
    data = np.ascontiguousarray(data).reshape(rows, -1, size)
    scale = data[:, :, :2].copy().view(np.float16).astype(np.float32)
    quants = data[:, :, 2:]
    if blocks == "q8_0":
        values = quants.view(np.int8).astype(np.float32)
    else:
        low = (quants & 0x0F).astype(np.float32) - 8
        high = (quants >> 4).astype(np.float32) - 8
        values = np.concatenate([low, high], axis=-1)
    return (values * scale).reshape(rows, -1)
