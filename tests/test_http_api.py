"""The OpenAI-compatible endpoint, end to end: a real `replit-lsp --serve` process on loopback,
the official `openai` client, curl, and the tiny random model checked against the independent
float64 reference.

One server process serves the whole module: starting one costs a few seconds of this
machine's two cores.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI
from tokenizers import Tokenizer

from lsp_server.http.chat_prompt import chat_prompt
from lsp_server.http.schemas import ChatMessage
from testkit.checkpoints import TINY_MAX_LENGTH
from testkit.reference import Expected
from testkit.servers import ServerProcess, start_server

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    process = start_server(tiny_model_dir, tmp_path_factory.mktemp("http-server"))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> OpenAI:
    return OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


CODE = "def fibonacci(n):\n"
SYSTEM_AND_USER = [
    {"role": "system", "content": "You complete Python code."},
    {"role": "user", "content": "import sys"},
    {
        "role": "user",
        "content": [{"type": "text", "text": "def main("}, {"type": "text", "text": "):"}],
    },
]


def test_chat_prompt_rule_for_the_messages_used_here() -> None:
    messages = [ChatMessage.model_validate(m) for m in SYSTEM_AND_USER]
    assert chat_prompt(messages) == "import sys\ndef main():"


def test_health_and_models(server: ServerProcess, client: OpenAI, model: str) -> None:
    health = httpx.get(server.url + "/health").json()
    assert health["state"] == "ready"
    assert health["pid"] == server.process.pid
    assert health["loads"] == 1
    assert health["model"] == model
    assert [m.id for m in client.models.list().data] == [model]
    assert client.models.retrieve(model).id == model


def test_chat_completion_matches_reference(client: OpenAI, model: str, expect) -> None:
    want = expect("import sys\ndef main():", 24)
    response = client.chat.completions.create(
        model=model, messages=SYSTEM_AND_USER, max_tokens=24, temperature=0
    )
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == want.text
    assert choice.finish_reason == want.finish_reason
    assert response.usage.prompt_tokens == len(want.prompt_ids)
    assert response.usage.completion_tokens == len(want.ids)
    assert response.usage.total_tokens == len(want.prompt_ids) + len(want.ids)


def test_streaming_chat_matches_reference(client: OpenAI, model: str, expect) -> None:
    want = expect("import sys\ndef main():", 24)
    stream = client.chat.completions.create(
        model=model,
        messages=SYSTEM_AND_USER,
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0].choices[0].delta.role == "assistant"
    with_choices = [c for c in chunks if c.choices]
    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    assert text == want.text
    assert len(with_choices) > 3, "the text must arrive in several chunks"
    assert with_choices[-1].choices[0].finish_reason == want.finish_reason
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == len(want.prompt_ids)
    assert chunks[-1].usage.completion_tokens == len(want.ids)


@pytest.mark.parametrize("stream", [False, True])
def test_text_completion_matches_reference(
    client: OpenAI, model: str, expect, stream: bool
) -> None:
    want = expect(CODE, 32)
    kwargs = {"model": model, "prompt": CODE, "max_tokens": 32}
    if not stream:
        response = client.completions.create(**kwargs, temperature=0)
        assert response.object == "text_completion"
        assert response.choices[0].text == want.text
        assert response.choices[0].finish_reason == want.finish_reason
        assert response.usage.completion_tokens == len(want.ids)
        assert response.usage.prompt_tokens == len(want.prompt_ids)
        return
    chunks = list(
        client.completions.create(
            **kwargs, temperature=0, stream=True, stream_options={"include_usage": True}
        )
    )
    with_choices = [c for c in chunks if c.choices]
    assert "".join(c.choices[0].text for c in with_choices) == want.text
    assert with_choices[-1].choices[0].finish_reason == want.finish_reason
    assert chunks[-1].usage.completion_tokens == len(want.ids)


def straddling_stop(want: Expected, tokenizer: Tokenizer) -> tuple[str, int]:
    """A stop string made of the end of one generated token and the start of the next, and
    how many tokens the server generates before it sees the whole stop string."""
    pieces = [tokenizer.decode([i]) for i in want.ids]
    for k in range(2, len(pieces) - 1):
        left, right = pieces[k - 1], pieces[k]
        if left.isascii() and right.isascii() and left.strip() and right.strip():
            stop = left[-2:] + right[:2]
            generated = next(
                n for n in range(1, len(want.ids) + 1) if stop in tokenizer.decode(want.ids[:n])
            )
            return stop, generated
    raise AssertionError(f"no two neighbouring printable tokens in {pieces}")


@pytest.mark.parametrize("stream", [False, True])
def test_stop_string_across_tokens_cuts_text(
    client: OpenAI, model: str, tokenizer: Tokenizer, expect, stream: bool
) -> None:
    want = expect(CODE, 32)
    stop, generated = straddling_stop(want, tokenizer)
    kwargs = {
        "model": model,
        "prompt": CODE,
        "max_tokens": 32,
        "temperature": 0,
        "stop": [stop, "unlikely-stop-string"],
    }
    if stream:
        chunks = list(
            client.completions.create(**kwargs, stream=True, stream_options={"include_usage": True})
        )
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
        usage = chunks[-1].usage
    else:
        response = client.completions.create(**kwargs)
        text, finish, usage = (
            response.choices[0].text,
            response.choices[0].finish_reason,
            response.usage,
        )
    assert text == want.text[: want.text.index(stop)]
    assert finish == "stop"
    assert usage.completion_tokens == generated


def test_chat_stop_string(client: OpenAI, model: str, tokenizer: Tokenizer, expect) -> None:
    want = expect("import sys\ndef main():", 24)
    stop, _ = straddling_stop(want, tokenizer)
    stream = client.chat.completions.create(
        model=model,
        messages=SYSTEM_AND_USER,
        max_tokens=24,
        temperature=0,
        stop=stop,
        stream=True,
    )
    chunks = list(stream)
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks)
        == want.text[: want.text.index(stop)]
    )
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_assistant_history_continues_the_text(client: OpenAI, model: str, expect) -> None:
    """An assistant turn is an earlier completion: the reply continues right after it."""
    want = expect("def add(a, b):\n    return", 16)
    response = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "user", "content": "def add(a, b):"},
            {"role": "assistant", "content": "\n    return"},
        ],
        max_tokens=16,
        temperature=0,
    )
    assert response.choices[0].message.content == want.text


def test_prompt_as_token_ids(client: OpenAI, model: str, expect) -> None:
    want = expect(CODE, 8)
    response = client.completions.create(
        model=model, prompt=want.prompt_ids, max_tokens=8, temperature=0
    )
    assert response.choices[0].text == want.text


def test_max_tokens_is_capped_to_the_room_left(
    client: OpenAI, model: str, tokenizer: Tokenizer
) -> None:
    prompt = "x = 1\n" * 50
    prompt_tokens = len(tokenizer.encode(prompt, add_special_tokens=False).ids)
    room = TINY_MAX_LENGTH - prompt_tokens
    assert 0 < room < 200
    response = client.completions.create(model=model, prompt=prompt, max_tokens=200, temperature=0)
    assert response.usage.prompt_tokens == prompt_tokens
    assert response.usage.completion_tokens <= room
    capped = response.usage.completion_tokens == room
    assert response.choices[0].finish_reason == ("length" if capped else "stop")


def test_seeded_sampling_is_reproducible(client: OpenAI, model: str) -> None:
    def sample(seed: int) -> str:
        response = client.completions.create(
            model=model,
            prompt=CODE,
            max_tokens=16,
            temperature=1.0,
            seed=seed,
            extra_body={"top_k": 40},
        )
        return response.choices[0].text

    assert sample(7) == sample(7)


def test_top_k_zero_samples_from_every_token(
    client: OpenAI, model: str, tokenizer: Tokenizer
) -> None:
    """top_k 0 is no top-k limit, as llama.cpp and vLLM read it (a remote client sends it)."""

    def sample(top_k: int) -> str:
        response = client.completions.create(
            model=model,
            prompt=CODE,
            max_tokens=16,
            temperature=1.0,
            seed=3,
            extra_body={"top_k": top_k},
        )
        return response.choices[0].text

    assert sample(0) == sample(tokenizer.get_vocab_size())


CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
USER_X = [{"role": "user", "content": "x = "}]


@pytest.mark.parametrize(
    ("path", "body", "status", "param", "code"),
    [
        (CHAT, b"{not json", 400, None, None),
        (CHAT, b"[1, 2]", 400, None, None),
        (CHAT, {"messages": []}, 400, "messages", None),
        (CHAT, {"messages": "x = "}, 400, "messages", None),
        (CHAT, {"messages": [{"role": "tool", "content": "x"}]}, 400, "messages.0.role", None),
        (
            CHAT,
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            400,
            "messages.0.content.0.type",
            None,
        ),
        (CHAT, {"messages": [{"role": "user", "content": ""}]}, 400, "messages", None),
        (CHAT, {"messages": USER_X, "max_tokens": 0}, 400, "max_tokens", None),
        (CHAT, {"messages": USER_X, "max_tokens": "many"}, 400, "max_tokens", None),
        (
            CHAT,
            {"messages": USER_X, "max_tokens": 10_000},
            400,
            "max_tokens",
            "context_length_exceeded",
        ),
        (CHAT, {"messages": USER_X, "temperature": -1}, 400, "temperature", None),
        (CHAT, {"messages": USER_X, "stream": "sometimes"}, 400, "stream", None),
        (CHAT, {"messages": USER_X, "n": 2}, 400, "n", None),
        (CHAT, {"model": "gpt-4o", "messages": USER_X}, 404, "model", "model_not_found"),
        (
            CHAT,
            {"messages": [{"role": "user", "content": "x = 1\n" * 400}]},
            400,
            "messages",
            "context_length_exceeded",
        ),
        (COMPLETIONS, {}, 400, "prompt", None),
        (COMPLETIONS, {"prompt": 5}, 400, "prompt", None),
        (COMPLETIONS, {"prompt": ["a", "b"]}, 400, "prompt", None),
        (COMPLETIONS, {"prompt": "x", "echo": True}, 400, "echo", None),
        (COMPLETIONS, {"prompt": "x = 1\n" * 400}, 400, "prompt", "context_length_exceeded"),
        (COMPLETIONS, {"prompt": "x", "stop": 3}, 400, "stop", None),
        (COMPLETIONS, {"prompt": "x", "stop": ["a"] * 17}, 400, "stop", None),
    ],
)
def test_bad_requests_get_openai_errors(
    server: ServerProcess,
    path: str,
    body: bytes | dict,
    status: int,
    param: str | None,
    code: str | None,
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(
        server.url + path, content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["code"] == code


def test_unknown_model_through_the_client(client: OpenAI) -> None:
    from openai import NotFoundError

    with pytest.raises(NotFoundError) as caught:
        client.completions.create(model="no-such-model", prompt="x", max_tokens=2)
    assert caught.value.code == "model_not_found"


def test_unknown_route_and_method_are_openai_shaped(server: ServerProcess) -> None:
    missing = httpx.get(server.url + "/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["message"]
    wrong_method = httpx.get(server.url + COMPLETIONS)
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["message"]


def readme_curl_example() -> str:
    """The streaming chat example exactly as README.md shows it."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("```sh\ncurl -sN", 1)[1].split("```", 1)[0]
    return "curl -sN" + block


def test_readme_curl_example(server: ServerProcess, model: str, expect) -> None:
    """The README's command, with this server's port and model name."""
    command = (
        readme_curl_example()
        .replace("8000", str(server.port))
        .replace("replit/replit-code-v1_5-3b", model)
    )
    result = subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "REPLIT_LSP_API_KEY": "unused"},
        check=True,
    )
    events = [
        line[len("data: ") :] for line in result.stdout.splitlines() if line.startswith("data: ")
    ]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
    assert text == expect(CODE, 48).text
    assert chunks[-1]["choices"][0]["finish_reason"] == expect(CODE, 48).finish_reason


def test_nothing_is_written_to_stdout(server: ServerProcess, client: OpenAI, model: str) -> None:
    """Beside the language server, stdout carries LSP messages: the HTTP side must not write."""
    client.completions.create(model=model, prompt="x", max_tokens=2)
    assert server.stdout.read_text() == ""
    assert "uvicorn" in server.stderr.read_text()
