"""Measures the demo model on code it never saw (CPython's Lib/test and the corpus's held-out
packages), and prints Markdown.

    python -m model.training.evaluate_demo model/assets/replit-code-demo

Three views of quality: mean held-out loss (comparable across runs with the same tokenizer),
next-line exact match and edit similarity inside functions (the product's actual use: complete
the current line),
and a few greedy completions to read. Everything is deterministic.
"""

from __future__ import annotations

import argparse
import ast
import random
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from model.training.bpe import EOS_TOKEN
from model.training.corpus import load_split, stdlib_test_sources
from model.training.mpt_torch import MPTForCausalLM, load_model
from model.training.train_demo import token_stream

SAMPLE_PROMPTS = [
    "def fibonacci(n):",
    "import os\n\ndef list_files(path):",
    "class Stack:\n    def __init__(self):",
    "def is_palindrome(s: str) -> bool:",
]


@torch.no_grad()
def mean_loss(model: MPTForCausalLM, stream: np.ndarray, window: int) -> tuple[float, int]:
    """Mean next-token loss over consecutive windows; returns (nats per token, tokens scored)."""
    total, count = 0.0, 0
    for start in range(0, len(stream) - 1, window):
        chunk = torch.from_numpy(stream[start : start + window + 1].astype(np.int64))[None]
        if chunk.shape[1] < 2:
            break
        n = chunk.shape[1] - 1
        total += float(model.loss(chunk[:, :-1], chunk[:, 1:])) * n
        count += n
    return total / count, count


def function_body_lines(text: str) -> list[int]:
    """0-based numbers of the non-blank lines inside function bodies (after the signature)."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    lines = text.splitlines()
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno:
            for number in range(node.body[0].lineno - 1, node.end_lineno):
                if lines[number].strip():
                    found.add(number)
    return sorted(found)


def next_line_cases(
    files: list[tuple[str, str]], tokenizer: Tokenizer, count: int, seed: int = 0
) -> list[tuple[str, str]]:
    """(prompt, target) pairs: the prompt ends where the tokenizer's first token of the line's
    code begins (usually inside the indentation, because byte-level BPE attaches one space to
    the following word), and the target is the rest of that line."""
    candidates = [(i, n) for i, (_, text) in enumerate(files) for n in function_body_lines(text)]
    cases = []
    for i, number in sorted(random.Random(seed).sample(candidates, count)):
        text = files[i][1]
        line_start = sum(len(line) for line in text.splitlines(keepends=True)[:number])
        line = text.splitlines()[number]
        code_start = line_start + len(line) - len(line.lstrip())
        cut = prompt_cut(tokenizer.encode(text, add_special_tokens=False).offsets, code_start)
        cases.append((text[:cut], text[cut : line_start + len(line)]))
    return cases


def prompt_cut(offsets: list[tuple[int, int]], code_start: int) -> int:
    """The last token boundary at or before the line's first code character: where an editor's
    prompt ends once the tokenizer has merged the newline with the indentation before it."""
    return max((end for _, end in offsets if end <= code_start), default=0)


def edit_similarity(completion: str, target: str) -> float:
    """1 - Levenshtein distance / the longer length, over characters, trailing whitespace
    ignored: 1.0 for an exact line, near 0 for an unrelated one."""
    a, b = completion.rstrip(), target.rstrip()
    if not a and not b:
        return 1.0
    previous = list(range(len(b) + 1))
    for i, char in enumerate(a, 1):
        current = [i]
        for j, other in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char != other))
            )
        previous = current
    return 1.0 - previous[-1] / max(len(a), len(b))


def greedy_text(
    model: MPTForCausalLM,
    tokenizer: Tokenizer,
    prompt: str,
    window: int,
    max_tokens: int,
    *,
    one_line: bool = False,
) -> str:
    """Greedy decode until end of text or `max_tokens`; with `one_line`, until the first
    newline too, as a line completion would, returning only that line."""
    eos = tokenizer.token_to_id(EOS_TOKEN)
    ids = tokenizer.encode(prompt, add_special_tokens=False).ids
    out: list[int] = []
    for token in model.greedy(ids, window):
        if token == eos or len(out) >= max_tokens:
            break
        out.append(token)
        if one_line and "\n" in tokenizer.decode(out[-1:]):
            break
    text = tokenizer.decode(out)
    return text.split("\n")[0] if one_line else text


def line_scores(
    model: MPTForCausalLM, tokenizer: Tokenizer, cases: list[tuple[str, str]], window: int
) -> tuple[int, float]:
    """(exact matches, mean edit similarity) of greedy one-line completions."""
    hits, similarity = 0, 0.0
    for prompt, target in cases:
        line = greedy_text(model, tokenizer, prompt, window, 48, one_line=True)
        hits += line.rstrip() == target.rstrip()
        similarity += edit_similarity(line, target)
    return hits, similarity / len(cases)


def evaluate(
    model_dir: Path, corpus_dir: Path, lines: int, window: int, prompt_tokens: int, windows: int
) -> str:
    torch.set_num_threads(1)
    model = load_model(model_dir)
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    held_out = [(path, text) for _, path, text in load_split(corpus_dir, "held_out")]
    stream = token_stream(tokenizer, [text for _, text in held_out])
    scores = [mean_loss(model, chunk, window) for chunk in evenly_spaced(stream, window, windows)]
    scored = sum(count for _, count in scores)
    loss = sum(value * count for value, count in scores) / scored
    out = [
        f"- Held-out packages, {windows} evenly spaced {window}-token windows ({scored:,} "
        f"tokens): {loss:.3f} nats/token",
    ]
    for name, files in (
        ("CPython Lib/test", stdlib_test_sources()),
        ("held-out packages", held_out),
    ):
        cases = next_line_cases(files, tokenizer, lines)
        hits, similarity = line_scores(model, tokenizer, cases, prompt_tokens)
        out.append(
            f"- Next line in functions, {name}: exact {hits}/{len(cases)} "
            f"({100 * hits / len(cases):.1f}%), mean edit similarity {similarity:.3f}"
        )
    out += [
        "",
        "Greedy completions (64 tokens at most, unedited; each block starts with its prompt):",
        "",
    ]
    for prompt in SAMPLE_PROMPTS:
        completion = greedy_text(model, tokenizer, prompt, prompt_tokens, 64)
        out += [f"**`{prompt!r}`**", "", "```python", prompt + completion, "```", ""]
    return "\n".join(out)


def evenly_spaced(stream: np.ndarray, window: int, count: int) -> list[np.ndarray]:
    """`count` windows of `window` + 1 tokens spread over the stream, so the loss reads every
    part of the held-out code in bounded time."""
    n = (len(stream) - 1) // window
    picks = np.linspace(0, n - 1, num=min(count, n)).astype(int)
    return [stream[p * window : p * window + window + 1] for p in picks]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--corpus-dir", type=Path, default=Path("training-runs/corpus"))
    parser.add_argument("--lines", type=int, default=60, help="next-line cases per set")
    parser.add_argument("--windows", type=int, default=64, help="loss windows")
    parser.add_argument("--window", type=int, default=512, help="tokens per loss window")
    parser.add_argument(
        "--prompt-tokens", type=int, default=256, help="context kept when generating"
    )
    args = parser.parse_args(argv)
    print(
        evaluate(
            args.model_dir,
            args.corpus_dir,
            args.lines,
            args.window,
            args.prompt_tokens,
            args.windows,
        )
    )


if __name__ == "__main__":
    main()
