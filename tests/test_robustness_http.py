"""The HTTP endpoint under generated and malformed requests: a real `replit-lsp --serve`.

Schemathesis generates requests from the server's own OpenAPI schema (valid and invalid ones)
and checks each answer: never a 5xx, only the statuses the schema declares, the declared
content types. After every case the server must still answer a known greedy completion with
the reference model's text. The reported failures are checked one by one as well.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import h11
import httpx
import pytest
import schemathesis
import uvicorn
from fastapi import FastAPI
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

from lsp_server.generation.sampling import GenerationParams
from lsp_server.http.errors import CatchUnexpected
from lsp_server.http.server import HttpServer
from lsp_server.resident import ResidentModel
from model.engine.options import EngineOptions
from testkit.robustness import robustness
from testkit.servers import ServerProcess, free_port, start_server

CODE = "def fibonacci(n):\n"

KNOWN = {"prompt": CODE, "max_tokens": 8, "temperature": 0}


@pytest.fixture(scope="module")
def server(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    process = start_server(tiny_model_dir, tmp_path_factory.mktemp("http-robustness"))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def known_text(expect) -> str:
    return expect(CODE, 8).text


def assert_alive(server: ServerProcess, known_text: str) -> None:
    assert server.process.poll() is None, server.stderr.read_text()[-3000:]
    response = httpx.post(server.url + "/v1/completions", json=KNOWN, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["text"] == known_text


def served_schema() -> dict:
    """The schema the endpoint serves, from the same app factory (no model is loaded for it):
    pytest collects the generated tests before any server runs."""
    resident = ResidentModel(lambda: EngineOptions(model_dir=Path("unused")))
    return HttpServer(resident, GenerationParams()).app.openapi()


schema = schemathesis.openapi.from_dict(served_schema())


@schema.parametrize()
@robustness()
def test_every_answer_is_declared_and_none_is_a_server_error(
    case: schemathesis.Case, server: ServerProcess, known_text: str
) -> None:
    response = case.call(base_url=server.url, timeout=60)
    case.validate_response(
        response, checks=[not_a_server_error, status_code_conformance, content_type_conformance]
    )
    assert_alive(server, known_text)


def test_the_schema_declares_the_real_errors(server: ServerProcess) -> None:
    served = httpx.get(server.url + "/openapi.json").json()
    assert served == json.loads(json.dumps(served_schema()))  # what the cases came from
    paths = served["paths"]
    for route in ("/v1/completions", "/v1/chat/completions"):
        responses = paths[route]["post"]["responses"]
        assert set(responses) == {"200", "400", "401", "404", "413", "429", "503"}
        assert set(responses["200"]["content"]) == {"application/json", "text/event-stream"}
    assert "404" in paths["/v1/models/{model}"]["get"]["responses"]
    assert not [
        (route, method)
        for route, operations in paths.items()
        for method, operation in operations.items()
        if "422" in operation["responses"]
    ], "FastAPI's 422 is never sent"


# ------------------------------------------------------------ the reported cases

# JSON bodies written out, so that the lone surrogate is sent as the escape a client writes.
SURROGATES = [
    ("/v1/completions", '{"prompt": "x = \\ud800", "max_tokens": 2}', "prompt"),
    ("/v1/completions", '{"prompt": ["\\udfff"], "max_tokens": 2}', "prompt.0"),
    ("/v1/completions", '{"prompt": "x", "model": "\\ud800"}', "model"),
    ("/v1/completions", '{"prompt": "x", "stop": ["\\ud83d"]}', "stop.0"),
    (
        "/v1/chat/completions",
        '{"messages": [{"role": "user", "content": "a\\udc00b"}]}',
        "messages.0.content",
    ),
    (
        "/v1/chat/completions",
        '{"messages": [{"role": "user", "content": [{"type": "text", "text": "\\ud800"}]}]}',
        "messages.0.content.0.text",
    ),
]


@pytest.mark.parametrize(("route", "body", "param"), SURROGATES)
def test_a_lone_surrogate_is_a_400_naming_its_field(
    server: ServerProcess, known_text: str, route: str, body: str, param: str
) -> None:
    response = httpx.post(
        server.url + route, content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert "lone surrogate" in error["message"]
    assert_alive(server, known_text)


@pytest.mark.parametrize("temperature", [1e-310, 5e-324])
def test_a_subnormal_temperature_streams_to_the_end(
    server: ServerProcess, known_text: str, temperature: float
) -> None:
    """Once a 200 followed by an error event and no [DONE]; so cold, sampling is greedy."""
    body = {**KNOWN, "temperature": temperature, "top_k": 5, "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        data = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(item) for item in data[:-1]]
    assert not [chunk for chunk in chunks if "error" in chunk]
    assert "".join(chunk["choices"][0]["text"] for chunk in chunks) == known_text
    plain = httpx.post(server.url + "/v1/completions", json={**body, "stream": False}, timeout=60)
    assert plain.json()["choices"][0]["text"] == known_text
    assert_alive(server, known_text)


def on_one_connection(port: int, requests: list[tuple[str, str, bytes]]) -> list[int]:
    """Sends the requests one after the other on one keep-alive connection and returns the
    statuses answered before the server closed it (or asked to)."""
    connection = h11.Connection(h11.CLIENT)
    statuses: list[int] = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        for method, target, body in requests:
            headers = [("Host", "localhost"), ("Content-Type", "application/json"),
                       ("Content-Length", str(len(body)))]  # fmt: skip
            sock.sendall(
                connection.send(h11.Request(method=method, target=target, headers=headers))
                + connection.send(h11.Data(data=body))
                + connection.send(h11.EndOfMessage())
            )
            while not isinstance(event := connection.next_event(), h11.EndOfMessage):
                if event is h11.NEED_DATA:
                    connection.receive_data(sock.recv(65536))
                elif isinstance(event, h11.Response):
                    statuses.append(event.status_code)
                elif isinstance(event, h11.ConnectionClosed):
                    return statuses
            if connection.their_state is not h11.DONE:
                return statuses
            try:
                connection.start_next_cycle()
            except h11.LocalProtocolError:  # the server said it closes the connection
                return statuses
    return statuses


def test_errors_keep_the_connection_open(server: ServerProcess, known_text: str) -> None:
    requests = [
        ("POST", "/v1/completions", b'{"prompt": "\\ud800"}'),
        ("POST", "/v1/completions", b"{not json"),
        ("POST", "/v1/completions", b'{"prompt": "x", "model": "other"}'),
        ("GET", "/no/such/route", b""),
        ("GET", "/health", b""),
    ]
    assert on_one_connection(server.port, requests) == [400, 400, 404, 404, 200]
    assert_alive(server, known_text)


@pytest.fixture(scope="module")
def failing_app() -> Iterator[int]:
    """A real uvicorn serving an app whose route raises, behind the server's 500 handling:
    the endpoint itself has no request known to fail, which is the point."""
    app = FastAPI()

    @app.get("/fails")
    async def fails() -> None:
        raise RuntimeError("a bug")

    @app.get("/works")
    async def works() -> dict[str, bool]:
        return {"ok": True}

    app.add_middleware(CatchUnexpected)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.05)
        assert thread.is_alive()
    yield port
    server.should_exit = True
    thread.join(10)


def test_a_500_keeps_the_connection_open(failing_app: int) -> None:
    """Starlette's own handler re-raised after answering, and uvicorn then closed the
    connection: the request after a 500 on a keep-alive connection was reset."""
    requests = [("GET", "/fails", b""), ("GET", "/works", b"")]
    assert on_one_connection(failing_app, requests) == [500, 200]
    with httpx.Client(base_url=f"http://127.0.0.1:{failing_app}") as client:
        failed = client.get("/fails")
        assert failed.status_code == 500
        assert failed.json()["error"]["type"] == "server_error"
        assert "RuntimeError: a bug" in failed.json()["error"]["message"]
