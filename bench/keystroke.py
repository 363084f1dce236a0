"""Per-keystroke latency of a complete suggestion: with prefix reuse against recompute, or
through a remote backend on the loopback against the local engine (`--remote`).

Replays a real editing trace: a standard-library file typed a few characters at a time from a
point where the text before the cursor is about `--context` tokens, asking for a suggestion
after each step, exactly as the language server builds its prompt (the text before the
cursor) and runs it (`stream_text`). The generators compared run alternately, step by step.
Besides the whole suggestion (`--new-tokens` tokens), the time to its first token is reported:
that is the part of a keystroke's cost that depends on the prompt, where reuse acts.

With `--remote`, one side is this process's engine and the other `RemoteEngine` against a
`replit-lsp --serve` process on the same model, both with one KV cache slot and prefix reuse:
the difference is what the remote path adds (HTTP, server-sent events, the server's admission,
and tokenizing the prompt text again there).
Usage: `python -m bench.keystroke --model demo --context 250 1000 [--remote]`.
"""

from __future__ import annotations

import argparse
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsp_server.generation.local import LocalGenerator
from lsp_server.generation.protocol import TextGenerator
from lsp_server.generation.remote.engine import RemoteEngine
from lsp_server.generation.remote.options import RemoteOptions
from lsp_server.generation.sampling import GenerationParams
from lsp_server.generation.stream import GenerationStats
from lsp_server.options import option_named
from model.engine.engine import Engine
from model.engine.options import EngineOptions
from model.hub import resolve_model_dir
from testkit.servers import start_server

TRACE_FILE = Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py"


def typing_trace(text: str, start: int, steps: int, chars_per_step: int) -> list[str]:
    """The document prefix before the cursor after each burst of typing."""
    return [text[: start + i * chars_per_step] for i in range(1, steps + 1)]


def start_for_context(generator: TextGenerator, text: str, tokens: int) -> int:
    """The character offset whose prefix tokenizes to about `tokens` tokens."""
    ids = generator.tokenizer.encode(text)
    return len(generator.tokenizer.decode(ids[:tokens]))


def suggest(
    generator: TextGenerator, prefix: str, new_tokens: int, **options: Any
) -> tuple[float, float, GenerationStats, str]:
    """Seconds to the first piece of a greedy suggestion and to its end (tokenization
    included), its statistics and its text; `options` go to `stream_text`."""
    started = time.perf_counter()
    first = None
    ids = generator.tokenizer.encode(prefix)[-(generator.max_length - new_tokens) :]
    params = GenerationParams(max_new_tokens=new_tokens, top_k=1)
    pieces = []
    with generator.stream_text(ids, params, **options) as stream:
        for piece in stream:
            first = first or time.perf_counter()
            pieces.append(piece)
    done = time.perf_counter()
    assert stream.stats is not None
    return (first or done) - started, done - started, stream.stats, "".join(pieces)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def replay(
    generators: dict[str, TextGenerator],
    contexts: list[int],
    ratio: tuple[str, str],
    row_fields: dict,
    *,
    steps: int,
    chars_per_step: int,
    new_tokens: int,
    progress: Callable[[str], object],
) -> list[dict]:
    """One row per context: each generator's p50/p95 milliseconds and mean reused tokens on
    the same trace, and the p50 ratio of `ratio[0]` to `ratio[1]`."""
    text = TRACE_FILE.read_text()
    rows = []
    for context in contexts:
        start = start_for_context(next(iter(generators.values())), text, context)
        trace = typing_trace(text, start, steps, chars_per_step)
        for generator in generators.values():  # the file was open before typing began
            suggest(generator, trace[0][:-1], new_tokens)
        timings: dict[str, list[tuple]] = {name: [] for name in generators}
        for prefix in trace:
            for name, generator in generators.items():
                timings[name].append(suggest(generator, prefix, new_tokens))
        row: dict = {**row_fields, "context": context}
        for name, samples in timings.items():
            for part, index in (("first", 0), ("whole", 1)):
                values = [sample[index] * 1000 for sample in samples]
                row[f"{name}_{part}_p50_ms"] = percentile(values, 0.5)
                row[f"{name}_{part}_p95_ms"] = percentile(values, 0.95)
            reused = sum(sample[2].reused_tokens for sample in samples)
            row[f"{name}_reused_tokens"] = reused / len(samples)
        slow, fast = ratio
        for part in ("first", "whole"):
            row[f"{part}_ratio"] = row[f"{slow}_{part}_p50_ms"] / row[f"{fast}_{part}_p50_ms"]
        rows.append(row)
        progress(str(row))
    return rows


def measure_keystrokes(
    model_dir: Path,
    encoding: str,
    contexts: list[int],
    *,
    steps: int = 20,
    chars_per_step: int = 3,
    new_tokens: int = 16,
    label: str = "",
    use_gpu: bool = False,
    progress=print,
) -> list[dict]:
    """One row per context: p50/p95 milliseconds with reuse and with recompute."""

    def engine(reuse: bool) -> LocalGenerator:
        options = EngineOptions(
            model_dir=model_dir,
            max_length=max(contexts) + new_tokens + 64,
            quantization_encoding=encoding,
            max_cache_batch_size=1,
            prefix_reuse=reuse,
            use_gpu=use_gpu,
        )
        return LocalGenerator(Engine(options))

    return replay(
        {"reuse": engine(True), "recompute": engine(False)},
        contexts,
        ("recompute", "reuse"),
        {"model": label, "encoding": encoding},
        steps=steps,
        chars_per_step=chars_per_step,
        new_tokens=new_tokens,
        progress=progress,
    )


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
    local = LocalGenerator(
        Engine(EngineOptions(model_dir, max_length=max_length, max_cache_batch_size=1))
    )
    with tempfile.TemporaryDirectory() as logs:
        server = start_server(
            model_dir, Path(logs), "--max-cache-batch-size", "1", max_length=max_length
        )
        try:
            options = RemoteOptions(
                server.url,
                max_length=max_length,
                slots=1,
                read_timeout=option_named("backend_timeout").default,
                tokenizer_dir=model_dir,
            )
            return replay(
                {"local": local, "remote": RemoteEngine(options)},
                contexts,
                ("remote", "local"),
                {"model": model_dir.name, "encoding": "float32"},
                steps=steps,
                chars_per_step=chars_per_step,
                new_tokens=new_tokens,
                progress=progress,
            )
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weight-path")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--context", type=int, nargs="+", default=[250, 1000])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--chars-per-step", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--quantization-encoding", default="float32")
    parser.add_argument(
        "--remote", action="store_true", help="local engine against a loopback replit-lsp --serve"
    )
    args = parser.parse_args()
    model_dir = resolve_model_dir(args.weight_path, args.model)
    print(f"model {model_dir}, {args.quantization_encoding}, trace {TRACE_FILE.name}")
    trace = {"steps": args.steps, "chars_per_step": args.chars_per_step}
    if args.remote:
        measure_remote_keystrokes(model_dir, args.context, new_tokens=args.new_tokens, **trace)
        return
    measure_keystrokes(
        model_dir, args.quantization_encoding, args.context, new_tokens=args.new_tokens, **trace
    )


if __name__ == "__main__":
    main()
