"""The Replit Code v1.5 (MPT) forward pass in PyTorch, for training the bundled demo model.

Parameter names are the Hugging Face ones, so `state_dict()` is the checkpoint as the product
loads it; nothing is renamed on export. The math is the graph's (`model/graph/`), and it
deliberately supports only what that model uses (no biases, weight-only LayerNorm, ALiBi,
grouped-query attention, tied embeddings).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from model.config import ModelConfig, load_config


class LayerNorm(nn.Module):
    """LayerNorm with a weight and no bias, as MPT uses with `no_bias: true`."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), self.weight, None, self.eps)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.kv_n_heads = config.kv_n_heads
        self.head_dim = config.head_dim
        self.d_model = config.d_model
        self.Wqkv = nn.Linear(config.d_model, config.qkv_size, bias=False)
        self.out_proj = nn.Linear(config.d_model, config.d_model, bias=False)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        kv = self.kv_n_heads * self.head_dim
        q, k, v = self.Wqkv(x).split([self.d_model, kv, kv], dim=-1)
        q = q.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.view(b, t, self.kv_n_heads, self.head_dim).transpose(1, 2)
        v = v.view(b, t, self.kv_n_heads, self.head_dim).transpose(1, 2)
        # Query head i reads kv head i // group, which is what repeat_interleave lays out.
        group = self.n_heads // self.kv_n_heads
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, self.d_model))


class FFN(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.up_proj = nn.Linear(config.d_model, config.ffn_hidden_size, bias=False)
        self.down_proj = nn.Linear(config.ffn_hidden_size, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.gelu(self.up_proj(x), approximate="none"))


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.norm_1 = LayerNorm(config.d_model, config.layer_norm_eps)
        self.attn = Attention(config)
        self.norm_2 = LayerNorm(config.d_model, config.layer_norm_eps)
        self.ffn = FFN(config)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm_1(x), bias)
        return x + self.ffn(self.norm_2(x))


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm_f = LayerNorm(config.d_model, config.layer_norm_eps)


class MPTForCausalLM(nn.Module):
    """Causal LM whose output head is the token embedding (MPT ties them)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = Transformer(config)
        self.register_buffer(
            "slopes", torch.tensor(config.alibi_slopes(), dtype=torch.float32), persistent=False
        )

    def init_weights(self, seed: int) -> None:
        """GPT-2 style init: residual-branch outputs are scaled down by depth so that the
        residual stream's variance does not grow with the number of blocks."""
        generator = torch.Generator().manual_seed(seed)
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layers)
        with torch.no_grad():
            for name, param in self.named_parameters():
                if name.endswith(("norm_1.weight", "norm_2.weight", "norm_f.weight")):
                    param.fill_(1.0)
                elif name.endswith(("out_proj.weight", "down_proj.weight")):
                    param.copy_(torch.randn(param.shape, generator=generator) * residual_std)
                else:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.02)

    def attention_bias(self, t: int) -> torch.Tensor:
        """ALiBi plus the causal mask, [n_heads, t, t]: slope_h * (j - i) for j <= i, else -inf."""
        pos = torch.arange(t, device=self.slopes.device)
        distance = (pos[None, :] - pos[:, None]).to(self.slopes.dtype)
        bias = self.slopes[:, None, None] * distance
        causal = pos[None, :] <= pos[:, None]
        return bias.masked_fill(~causal, float("-inf"))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits for every position of a [batch, t] token tensor."""
        h = self.transformer.wte(tokens)
        bias = self.attention_bias(tokens.shape[1]).to(h.dtype)
        for block in self.transformer.blocks:
            h = block(h, bias)
        h = self.transformer.norm_f(h)
        return h @ self.transformer.wte.weight.T

    def loss(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy in nats."""
        logits = self.forward(tokens)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    @torch.no_grad()
    def greedy(self, tokens: list[int], window: int) -> Iterator[int]:
        """Endless greedy continuation; the caller decides where to stop. Each step recomputes
        the last `window` tokens (no KV cache: the demo model is small, and this keeps the code
        a direct transcription of the math)."""
        context = list(tokens)
        while True:
            x = torch.tensor([context[-window:]], dtype=torch.long)
            token = int(self.forward(x)[0, -1].argmax())
            context.append(token)
            yield token


def load_model(model_dir: Path, dtype: torch.dtype = torch.float32) -> MPTForCausalLM:
    """Loads a Hugging Face layout directory (config.json + model.safetensors)."""
    model = MPTForCausalLM(load_config(Path(model_dir)))
    state = load_file(str(Path(model_dir) / "model.safetensors"))
    model.load_state_dict(state, strict=True)
    return model.to(dtype).eval()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
