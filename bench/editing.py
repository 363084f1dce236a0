"""What each keystroke costs on editing traces a person produces, with the latency features on
and off, side by side in one run.

Traces, from the standard library's sources:
- `large-file`: twelve lines in the middle of `argparse.py` removed and retyped, a request every
  three characters: the text before the cursor is far larger than the prompt window.
- `accept`: in `textwrap.py`, take each suggestion (the whole of it), then type on from the file.
- `repeat`: retype a function right below itself, as when duplicating code to edit it: the
  continuation copies text already in the context.

Each keystroke goes through the language server's own path (`cursor_snapshot`,
`generate_completion`, the document's `DocumentMemory`), in process, so that what is counted
is the engine's work: graph runs and tokens computed (from its counters), and the wall time to
the complete suggestion. Configurations alternate keystroke by keystroke, one engine each.
Usage: `python -m bench.editing --model demo --max-length 1024`.
"""

from __future__ import annotations

import argparse
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.keystroke import percentile
from lsp_server.context.provider import ContextOptions, SourceText, WorkspaceContext
from lsp_server.generation.local import LocalGenerator
from lsp_server.lsp.completion import CompletionOutcome, generate_completion, prompt_budget
from lsp_server.lsp.document_memory import DocumentMemory
from lsp_server.lsp.positions import resolve_cursor
from lsp_server.lsp.settings import Settings
from lsp_server.lsp.snapshot import cursor_snapshot
from model.engine.engine import Engine
from model.engine.options import EngineOptions
from model.hub import resolve_model_dir

STDLIB = Path(sysconfig.get_paths()["stdlib"])


@dataclass(frozen=True)
class Keystroke:
    """The document and the cursor after one burst of typing; `accept` takes the suggestion."""

    text: str
    offset: int
    accept: bool = False


@dataclass(frozen=True)
class Features:
    name: str
    stable_window: bool = True
    typing_through: bool = True
    # Workspace context ahead of the file, up to this many tokens (the standard library as
    # the workspace), chosen at the first keystroke: the traces type without pausing.
    context_tokens: int = 0


FEATURES = (
    Features("all on"),
    Features("moving window", stable_window=False),
    Features("no typing through", typing_through=False),
    Features("workspace context", context_tokens=480),
)


def stdlib_context() -> WorkspaceContext:
    context = WorkspaceContext()
    context.set_folders([STDLIB], ())
    context.index.build(context.workspace)
    return context


def retype(text: str, start: int, end: int, chars_per_step: int) -> Iterator[Keystroke]:
    """`text` with [start, end) removed, then retyped a few characters at a time."""
    removed, rest = text[:start], text[end:]
    for cut in range(start, end + 1, chars_per_step):
        yield Keystroke(removed + text[start:cut] + rest, cut)


def large_file_trace(chars_per_step: int = 3) -> list[Keystroke]:
    text = (STDLIB / "argparse.py").read_text()
    lines = text.splitlines(keepends=True)
    start = sum(len(line) for line in lines[:1200])
    end = start + sum(len(line) for line in lines[1200:1212])
    return list(retype(text, start, end, chars_per_step))


def repeat_trace(chars_per_step: int = 3) -> list[Keystroke]:
    """Below `TextWrapper._split`'s definition, the same function typed again."""
    text = (STDLIB / "textwrap.py").read_text()
    start = text.index("    def _split(self, text):")
    end = text.index("    def _fix_sentence_endings", start)
    block = text[start:end]
    doubled = text[:end] + block + text[end:]
    return list(retype(doubled, end, end + len(block), chars_per_step))


def accept_trace(rounds: int = 8, typed_between: int = 12, chars_per_step: int = 3) -> list:
    """Every few keystrokes the suggestion is accepted; the typing then goes on from the file
    (after the accepted text, whatever it said)."""
    text = (STDLIB / "textwrap.py").read_text()
    start = text.index("def dedent(text):")
    trace: list[Keystroke] = []
    for round_ in range(rounds):
        for step in range(0, typed_between, chars_per_step):
            cut = start + round_ * typed_between + step
            trace.append(Keystroke(text, cut, accept=step + chars_per_step >= typed_between))
    return trace


TRACES = {"large-file": large_file_trace, "accept": accept_trace, "repeat": repeat_trace}
# The file each trace edits, which the workspace context must not quote back.
TRACE_FILES = {"large-file": "argparse.py", "accept": "textwrap.py", "repeat": "textwrap.py"}


@dataclass
class Replay:
    """One configuration's engine, document memory and what its keystrokes cost."""

    features: Features
    engine: LocalGenerator
    memory: DocumentMemory = field(default_factory=DocumentMemory)
    workspace: WorkspaceContext | None = None
    path: Path | None = None  # the edited file's
    # Suggestions taken so far: where in the trace's text each was inserted, and its text.
    accepted: list[tuple[int, str]] = field(default_factory=list)
    costs: list[dict] = field(default_factory=list)

    def document(self, key: Keystroke) -> tuple[str, int]:
        """The trace's text with the accepted suggestions in it, and the cursor's offset."""
        pieces, done, offset = [], 0, key.offset
        for at, text in self.accepted:
            pieces += [key.text[done:at], text]
            done = at
            offset += len(text) if at <= key.offset else 0
        return "".join(pieces) + key.text[done:], offset

    def keystroke(self, key: Keystroke, settings: Settings) -> None:
        text, offset = self.document(key)
        before = text[:offset]
        line = before.count("\n")
        cursor = resolve_cursor(text, line, offset - (before.rfind("\n") + 1), "utf-32")
        window = self.memory.window_start if self.features.stable_window else None
        if self.workspace is not None and self.memory.context is None:
            budget = prompt_budget(self.engine.max_length, settings.max_new_tokens) // 2
            self.memory.context = self.workspace.choose(
                SourceText(self.path.as_uri() if self.path else "", self.path, text),
                before,
                [],
                ContextOptions(tokens=min(self.features.context_tokens, budget)),
                "python",
                lambda piece: len(self.engine.tokenizer.encode(piece)),
            )
        header = self.memory.context.text if self.memory.context else ""
        snapshot = cursor_snapshot(text, cursor, settings, header=header, window_start=window)
        counters = self.engine.counters
        started = time.perf_counter()
        remembered = self.memory.suggestions.answer(before, header, keep=0)
        rest = remembered.text if remembered and self.features.typing_through else None
        if rest:
            outcome = CompletionOutcome(rest, window_start=self.memory.window_start)
        else:
            outcome = generate_completion(self.engine, snapshot, lambda: False)
            self.memory.remember(snapshot, outcome, keep=0)
        seconds = time.perf_counter() - started
        after = self.engine.counters
        self.costs.append(
            {
                "ms": seconds * 1000,
                "graph_runs": after.graph_runs - counters.graph_runs,
                "computed_tokens": after.computed_tokens - counters.computed_tokens,
                # The prompt's share: what a cache that keeps the context saves or not.
                "prompt_computed": (
                    outcome.stats.prompt_tokens - outcome.stats.reused_tokens
                    if outcome.stats
                    else 0
                ),
                "typed_through": bool(rest),
            }
        )
        if key.accept and outcome.text:
            self.accepted.append((key.offset, outcome.text))


def summarize(replay: Replay, budget: int, typed_tokens: int) -> dict:
    costs = replay.costs
    ms = [c["ms"] for c in costs]
    recomputes = sum(c["computed_tokens"] > budget // 2 for c in costs[1:])
    return {
        "features": replay.features.name,
        "keystrokes": len(costs),
        "graph_runs_per_keystroke": sum(c["graph_runs"] for c in costs) / len(costs),
        "tokens_computed_per_keystroke": sum(c["computed_tokens"] for c in costs) / len(costs),
        "prompt_tokens_computed_per_keystroke": sum(c["prompt_computed"] for c in costs)
        / len(costs),
        "full_recomputes": recomputes,
        "typed_tokens_per_recompute": typed_tokens / recomputes if recomputes else None,
        "typed_through": sum(c["typed_through"] for c in costs),
        "p50_ms": percentile(ms, 0.5),
        "p95_ms": percentile(ms, 0.95),
        "max_ms": max(ms),
    }


def measure_editing(
    model_dir: Path,
    encoding: str,
    max_length: int,
    traces: list[str],
    *,
    max_new_tokens: int = 16,
    label: str = "",
    progress=print,
) -> list[dict]:
    """One row per trace and configuration, the configurations replayed side by side."""
    settings = Settings(max_new_tokens=max_new_tokens)
    budget = max_length - max_new_tokens
    options = EngineOptions(
        model_dir=model_dir,
        quantization_encoding=encoding,
        max_length=max_length,
        max_cache_batch_size=1,
    )
    engines = [LocalGenerator(Engine(options)) for _ in FEATURES]
    rows = []
    for trace_name in traces:
        trace = TRACES[trace_name]()
        workspace = stdlib_context()
        replays = [
            Replay(
                features,
                engine,
                workspace=workspace if features.context_tokens else None,
                path=STDLIB / TRACE_FILES[trace_name],
            )
            for features, engine in zip(FEATURES, engines, strict=True)
        ]
        for key in trace:
            for replay in replays:
                replay.keystroke(key, settings)
        first, last = trace[0], trace[-1]
        typed = last.text[first.offset : last.offset]
        typed_tokens = len(engines[0].tokenizer.encode(typed))
        for replay in replays:
            row = {"model": label, "encoding": encoding, "max_length": max_length}
            row |= {"trace": trace_name, "typed_tokens": typed_tokens}
            row |= summarize(replay, budget, typed_tokens)
            rows.append(row)
            progress(str(row))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weight-path")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--quantization-encoding", default="float32")
    parser.add_argument("--traces", nargs="+", default=list(TRACES), choices=list(TRACES))
    args = parser.parse_args()
    model_dir = resolve_model_dir(args.weight_path, args.model)
    measure_editing(
        model_dir,
        args.quantization_encoding,
        args.max_length,
        args.traces,
        max_new_tokens=args.max_new_tokens,
        label=model_dir.name,
    )


if __name__ == "__main__":
    main()
