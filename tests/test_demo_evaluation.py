"""The demo model's evaluation helpers: the edit similarity and where a line's prompt ends."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch", reason="torch is only installed with the 'train' extra")

from tokenizers import Tokenizer  # noqa: E402

from model.training.evaluate_demo import edit_similarity, prompt_cut  # noqa: E402

DEMO_TOKENIZER = (
    Path(__file__).resolve().parents[1] / "model/assets/replit-code-demo/tokenizer.json"
)


def test_edit_similarity() -> None:
    assert edit_similarity("return x", "return x  ") == 1.0
    assert edit_similarity("", "") == 1.0
    assert edit_similarity("abcd", "abcf") == 0.75
    assert edit_similarity("", "abc") == 0.0


def test_prompt_ends_inside_the_indentation_at_a_token_boundary() -> None:
    tokenizer = Tokenizer.from_file(str(DEMO_TOKENIZER))
    text = "def f(x):\n    y = 1\n        return x\n"
    code_start = text.index("return")
    encoding = tokenizer.encode(text, add_special_tokens=False)
    cut = prompt_cut(encoding.offsets, code_start)
    line_start = text.rindex("\n", 0, code_start) + 1
    assert line_start <= cut <= code_start
    assert text[line_start:cut].strip() == ""
    prompt_ids = tokenizer.encode(text[:cut], add_special_tokens=False).ids
    assert prompt_ids == encoding.ids[: len(prompt_ids)]
