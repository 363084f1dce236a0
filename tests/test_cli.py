"""`replit-lsp --prompt` end to end, as a user runs it, and its answers to bad input."""

import os
import subprocess
import sys

import pytest

from model.tokenizer import Tokenizer

PROMPT = "def fibonacci(n):"


def run_cli(*args, env=None, timeout=600):
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "lsp_server.cli", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
    )


def test_prompt_prints_the_reference_greedy_continuation(tiny_model_dir, tiny_reference):
    tokenizer = Tokenizer(tiny_model_dir)
    result = run_cli(
        "--prompt",
        PROMPT,
        "--weight-path",
        str(tiny_model_dir),
        "--max-new-tokens",
        "20",
        "--max-length",
        "128",
    )
    assert result.returncode == 0, result.stderr
    expected = tiny_reference.greedy(tokenizer.encode(PROMPT), 20, tokenizer.eos_id)
    assert result.stdout == tokenizer.decode(expected) + "\n"
    assert "model ready" in result.stderr


def test_an_over_long_prompt_is_cut_from_the_front_with_a_warning(tiny_model_dir):
    result = run_cli(
        "--prompt",
        "x = 1\n" * 200,
        "--weight-path",
        str(tiny_model_dir),
        "--max-new-tokens",
        "4",
        "--max-length",
        "64",
    )
    assert result.returncode == 0, result.stderr
    assert "keeping its last 60" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--weight-path", "/nonexistent/model"], "--weight-path /nonexistent/model: no such"),
        (["--max-length", "1"], "--max-length must be between 2 and"),
        (["--top-k", "0"], "top_k must be >= 1"),
        (["--use-gpu"], "no supported GPU"),
    ],
)
def test_bad_options_get_one_clear_line(tiny_model_dir, args, message):
    base = ["--prompt", PROMPT, "--weight-path", str(tiny_model_dir)]
    result = run_cli(*base, *args)
    if "--use-gpu" in args and result.returncode == 0:
        pytest.skip("this machine has a GPU")
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_corrupt_weights_name_the_file(tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (broken / name).write_bytes((tiny_model_dir / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage}")
    result = run_cli("--prompt", PROMPT, "--weight-path", str(broken))
    assert result.returncode == 1
    assert "model.safetensors: " in result.stderr
    assert "Traceback" not in result.stderr


def test_the_default_model_offline_and_uncached_fails_with_one_sentence(tmp_path):
    result = run_cli("--prompt", PROMPT, env={"HF_HOME": str(tmp_path / "hf")}, timeout=120)
    assert result.returncode == 1
    assert "replit/replit-code-v1_5-3b is not in the local Hugging Face cache" in result.stderr
    assert "--model demo" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_encoding_is_refused_by_the_parser():
    result = run_cli("--prompt", PROMPT, "--quantization-encoding", "int3")
    assert result.returncode == 2
    assert "invalid choice: 'int3'" in result.stderr


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ('{"repeat_penalty": 1.0', "is not valid JSON"),
        ("[1, 2]", "must be a JSON object of request fields, got [1, 2]"),
        ('{"prompt": "x", "stream": false}', "may not set prompt, stream"),
    ],
)
def test_bad_backend_fields_are_refused_by_the_parser(fields, message):
    result = run_cli(
        "--prompt", PROMPT, "--backend-url", "http://127.0.0.1:9", "--backend-fields", fields
    )
    assert result.returncode == 2
    assert f"argument --backend-fields: {message}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stdio", "--tcp"], "--stdio and --tcp cannot be combined"),
        (["--prompt", PROMPT, "--stdio"], "--prompt completes once and exits"),
        (["--prompt", PROMPT, "--serve"], "--prompt completes once and exits"),
    ],
)
def test_conflicting_modes_are_refused_by_the_parser(args, message):
    result = run_cli(*args, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
