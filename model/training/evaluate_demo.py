"""Measures the demo model on standard library files it never saw, and prints Markdown.

    python -m model.training.evaluate_demo model/assets/replit-code-demo

Three views of quality: mean held-out loss (comparable across runs with the same tokenizer),
next-line exact match inside functions (the product's actual use: complete the current line),
and a few greedy completions to read. Everything is deterministic.
"""

from __future__ import annotations

import argparse
import ast
import math
import random
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from model.training.bpe import EOS_TOKEN
from model.training.corpus import stdlib_sources
from model.training.mpt_torch import MPTForCausalLM, load_model
from model.training.train_demo import split_sources, token_stream

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


def evaluate(model_dir: Path, lines: int, window: int, prompt_tokens: int) -> str:
    torch.set_num_threads(1)
    model = load_model(model_dir)
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    _, held_out = split_sources(stdlib_sources())

    loss, scored = mean_loss(model, token_stream(tokenizer, [t for _, t in held_out]), window)
    cases = next_line_cases(held_out, tokenizer, lines)
    hits = 0
    for prompt, target in cases:
        line = greedy_text(model, tokenizer, prompt, prompt_tokens, 48, one_line=True)
        if line.rstrip() == target.rstrip():
            hits += 1

    out = [
        f"Held out: {len(held_out)} standard library files ({scored:,} tokens), "
        "never seen in training (tokenizer included).",
        "",
        f"- Mean loss: {loss:.3f} nats/token (perplexity {math.exp(loss):.2f}), "
        f"{window}-token windows",
        f"- Next-line exact match inside functions: {hits}/{len(cases)} "
        f"({100 * hits / len(cases):.1f}%), greedy, up to {prompt_tokens} tokens of prompt",
        "",
        "Greedy completions (64 tokens at most, unedited; each block starts with its prompt):",
        "",
    ]
    for prompt in SAMPLE_PROMPTS:
        completion = greedy_text(model, tokenizer, prompt, prompt_tokens, 64)
        out += [f"**`{prompt!r}`**", "", "```python", prompt + completion, "```", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--lines", type=int, default=200, help="next-line cases to sample")
    parser.add_argument("--window", type=int, default=512, help="tokens per loss window")
    parser.add_argument(
        "--prompt-tokens", type=int, default=256, help="context kept when generating"
    )
    args = parser.parse_args(argv)
    print(evaluate(args.model_dir, args.lines, args.window, args.prompt_tokens))


if __name__ == "__main__":
    main()
