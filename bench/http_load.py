"""Streaming load on the OpenAI-compatible endpoint: time to first token and tokens/s for 1 and
for N concurrent clients.

Each client streams one completion with `stream_options.include_usage`, so the token count is
the server's own. Per client: time to first token (request sent to first text chunk) and the
decode rate after it. Per round: the aggregate tokens/s over the wall time of the round.

Usage:
    python -m bench.http_load --url http://127.0.0.1:8000            # a running server
    python -m bench.http_load --weight-path DIR --max-length 512     # starts one itself
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from testkit.servers import start_server

PROMPT = "import os\nimport sys\n\n\ndef main():\n"


@dataclass
class Stream:
    first_token_s: float
    total_s: float
    tokens: int

    @property
    def decode_rate(self) -> float:
        """Tokens after the first, per second after the first arrived."""
        after_first = self.total_s - self.first_token_s
        return (self.tokens - 1) / after_first if after_first > 0 else float("nan")


async def one_stream(http: httpx.AsyncClient, url: str, body: dict) -> Stream:
    started = time.perf_counter()
    first = None
    tokens = 0
    async with http.stream("POST", url + "/v1/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[len("data: ") :])
            if chunk["choices"] and chunk["choices"][0]["text"] and first is None:
                first = time.perf_counter() - started
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    total = time.perf_counter() - started
    return Stream(first if first is not None else total, total, tokens)


async def round_of(url: str, clients: int, max_tokens: int, headers: dict) -> None:
    body = {
        "prompt": PROMPT,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with httpx.AsyncClient(timeout=600, headers=headers) as http:
        await one_stream(http, url, {**body, "max_tokens": 4})  # warm the prefix cache
        started = time.perf_counter()
        streams = await asyncio.gather(*(one_stream(http, url, body) for _ in range(clients)))
        wall = time.perf_counter() - started
    ttft = [s.first_token_s * 1000 for s in streams]
    rates = [s.decode_rate for s in streams]
    total = sum(s.tokens for s in streams)
    print(
        f"{clients} client(s): time to first token {statistics.mean(ttft):.1f} ms mean, "
        f"{max(ttft):.1f} ms max; per-client decode {statistics.mean(rates):.1f} tokens/s; "
        f"aggregate {total / wall:.1f} tokens/s ({total} tokens in {wall:.2f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="a running server (else --weight-path)")
    parser.add_argument("--weight-path", default=None, help="start a server on this model")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--api-key", default=os.environ.get("REPLIT_LSP_API_KEY"))
    args = parser.parse_args()
    if not (args.url or args.weight_path):
        parser.error("give --url or --weight-path")
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    server = None
    url = args.url
    if url is None:
        server = start_server(
            Path(args.weight_path),
            Path(tempfile.mkdtemp(prefix="http-load-")),
            "--max-cache-batch-size",
            str(max(args.clients)),
            "--log-level",
            "WARNING",
            max_length=args.max_length,
        )
        url = server.url
    try:
        health = httpx.get(url + "/health").json()
        print(f"model {health.get('model')} at {url}, max tokens {args.max_tokens}")
        for clients in args.clients:
            asyncio.run(round_of(url, clients, args.max_tokens, headers))
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
