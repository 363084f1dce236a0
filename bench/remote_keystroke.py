"""Per-keystroke latency through a remote backend on the loopback, against the local engine.

The same editing trace as `bench.keystroke`, and the same model: one engine in this process,
and one `replit-lsp --serve` process reached through `RemoteEngine`, each with one KV cache
slot and prefix reuse, alternating step by step. Both are driven through `stream_text`, the
call the language server makes for a keystroke, so the difference is what the remote path
adds: HTTP, server-sent events, the server's admission and the re-tokenization of the prompt
text, on top of the same generation.
Usage: `python -m bench.remote_keystroke --model demo --context 250 900`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.keystroke import TRACE_FILE, percentile, start_for_context, typing_trace
from lsp_server.remote import RemoteEngine, RemoteOptions
from model.engine import Engine, EngineOptions
from model.generation import TextGenerator
from model.hub import resolve_model_dir
from model.sampling import SamplingParams
from testkit.servers import start_server


def suggest(generator: TextGenerator, prefix: str, new_tokens: int) -> tuple[float, float]:
    """Seconds to the first piece of a greedy suggestion and to its end, tokenization
    included, as a keystroke pays them."""
    started = time.perf_counter()
    first = None
    ids = generator.tokenizer.encode(prefix)[-(generator.max_length - new_tokens) :]
    params = SamplingParams(max_new_tokens=new_tokens, top_k=1)
    with generator.stream_text(ids, params) as stream:
        for _ in stream:
            first = first or time.perf_counter()
    done = time.perf_counter()
    return (first or done) - started, done - started


def measure_remote_keystrokes(
    model_dir: Path,
    contexts: list[int],
    *,
    steps: int = 20,
    chars_per_step: int = 3,
    new_tokens: int = 16,
    progress=print,
) -> list[dict]:
    """One row per context: p50/p95 milliseconds, local and through the loopback."""
    max_length = max(contexts) + new_tokens + 64
    local = Engine(EngineOptions(model_dir, max_length=max_length, max_cache_batch_size=1))
    with tempfile.TemporaryDirectory() as logs:
        server = start_server(
            model_dir, Path(logs), "--max-cache-batch-size", "1", max_length=max_length
        )
        try:
            remote = RemoteEngine(
                RemoteOptions(server.url, tokenizer_dir=model_dir, max_length=max_length, slots=1)
            )
            generators: dict[str, TextGenerator] = {"local": local, "remote": remote}
            text = TRACE_FILE.read_text()
            rows = []
            for context in contexts:
                trace = typing_trace(
                    text, start_for_context(local, text, context), steps, chars_per_step
                )
                for generator in generators.values():  # the file was open before typing
                    suggest(generator, trace[0][:-1], new_tokens)
                timings: dict[str, list[tuple[float, float]]] = {name: [] for name in generators}
                for prefix in trace:
                    for name, generator in generators.items():
                        timings[name].append(suggest(generator, prefix, new_tokens))
                row: dict = {"model": model_dir.name, "context": context}
                for name, samples in timings.items():
                    for part, index in (("first", 0), ("whole", 1)):
                        values = [sample[index] * 1000 for sample in samples]
                        row[f"{name}_{part}_p50_ms"] = percentile(values, 0.5)
                        row[f"{name}_{part}_p95_ms"] = percentile(values, 0.95)
                rows.append(row)
                progress(str(row))
            return rows
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weight-path")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--context", type=int, nargs="+", default=[250, 900])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--chars-per-step", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=16)
    args = parser.parse_args()
    model_dir = resolve_model_dir(args.weight_path, args.model)
    print(f"model {model_dir}, float32, trace {TRACE_FILE.name}")
    measure_remote_keystrokes(
        model_dir,
        args.context,
        steps=args.steps,
        chars_per_step=args.chars_per_step,
        new_tokens=args.new_tokens,
    )


if __name__ == "__main__":
    main()
