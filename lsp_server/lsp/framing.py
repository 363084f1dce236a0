"""Reading LSP messages off a byte stream, with limits, for stdio and TCP.

pygls's reader trusts the stream: it reads a declared `Content-Length` in one piece (a length
of 10^12 raises MemoryError, a 20-digit one OverflowError, both outside its error handling,
which ends the process), it only recognises the header spelled `Content-Length` (header names
are case-insensitive), and a header line has no length limit. This reader refuses a message
over `MAX_MESSAGE_BYTES` with a log line and skips its body, so the stream stays in step, and
answers a body that is not JSON with a parse error.

A header repeated with the same value (as two lines, or as HTTP's comma-joined list) is one
header. A message whose length cannot be known (none, not a number, or repeated with
different values) cannot be read, and its body would otherwise be taken for the next headers,
losing every message after it: the reader then looks for the next `Content-Length` header,
even one glued to the end of the unread body, and goes on from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, Protocol

from pygls.exceptions import JsonRpcException
from pygls.io_ import StdoutWriter
from pygls.lsp.server import LanguageServer

from lsp_server.lsp.rpc import ServerProtocol

log = logging.getLogger("replit_lsp.lsp")

# The largest message accepted: a 5 MB source file is about 6 MB of JSON, so this leaves room
# for any document an editor sends while keeping one message's buffer bounded.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# A header line is `Name: value`; one longer than this is not a header and is skipped.
MAX_HEADER_LINE = 8192
# How much of a refused message's body is read (and dropped) at a time.
SKIP_CHUNK = 1024 * 1024
# The length of a message declared with more digits than Python converts: the rest of the stream.
ENDLESS = 10**4000


class ByteSource(Protocol):
    """Reads from the client: a line of at most `limit` bytes, or up to `size` bytes; both
    return b"" at the end of the stream."""

    def line(self, limit: int) -> Awaitable[bytes]: ...

    def read(self, size: int) -> Awaitable[bytes]: ...


class StdinSource:
    """Standard input, read on a worker thread so the event loop never blocks on it."""

    def __init__(self, stdin: BinaryIO, executor: ThreadPoolExecutor) -> None:
        self._stdin = stdin
        self._executor = executor

    def line(self, limit: int) -> Awaitable[bytes]:
        return asyncio.get_running_loop().run_in_executor(
            self._executor, self._stdin.readline, limit
        )

    def read(self, size: int) -> Awaitable[bytes]:
        return asyncio.get_running_loop().run_in_executor(self._executor, self._stdin.read, size)


class StreamSource:
    """A TCP connection's asyncio stream."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    async def line(self, limit: int) -> bytes:
        try:
            return await self._reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as error:
            return error.partial
        except asyncio.LimitOverrunError as error:  # no line break within the stream's buffer
            return await self._reader.read(min(error.consumed, limit) or limit)

    async def read(self, size: int) -> bytes:
        return await self._reader.read(size)


async def read_exactly(source: ByteSource, size: int) -> bytes:
    """`size` bytes, or fewer if the stream ends first."""
    parts: list[bytes] = []
    while size > 0 and (part := await source.read(size)):
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


async def skip(source: ByteSource, size: int) -> bool:
    """Reads and drops `size` bytes in bounded pieces; False if the stream ended first."""
    while size > 0:
        part = await source.read(min(size, SKIP_CHUNK))
        if not part:
            return False
        size -= len(part)
    return True


# Where the next message's headers start when the reader has lost its place.
_LENGTH_HEADER = re.compile(rb"content-length[ \t]*:", re.IGNORECASE)


async def read_headers(source: ByteSource, resync: bool = False) -> dict[str, list[str]] | None:
    """The next header block, names lowercased, each with its values in order; None at the
    end of the stream. With `resync`, everything before the next `Content-Length` header is
    dropped (the unread body of a message whose length was unknown)."""
    headers: dict[str, list[str]] = {}
    while True:
        line = await source.line(MAX_HEADER_LINE)
        if not line:
            return None
        if not line.endswith(b"\n"):  # longer than any header: drop it up to its end
            log.error("skipped a header line longer than %d bytes", MAX_HEADER_LINE)
            while line and not line.endswith(b"\n"):
                line = await source.line(MAX_HEADER_LINE)
            continue
        if resync:
            found = _LENGTH_HEADER.search(line)
            if found is None:
                continue
            line, resync = line[found.start() :], False
        text = line.decode("ascii", "replace").strip()
        if not text:
            if headers:
                return headers
            continue  # a stray line break between messages
        name, colon, value = text.partition(":")
        if colon:
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        else:
            log.error("skipped a line that is not a header: %r", text[:80])


def declared_length(headers: dict[str, list[str]]) -> int | None:
    """The Content-Length as a number; None when missing, not a decimal number, or given
    more than once with different values."""
    values = {
        part.strip() for value in headers.get("content-length", []) for part in value.split(",")
    }
    if len(values) != 1:
        if len(values) > 1:
            log.error("refused a message with conflicting Content-Length headers: %s", values)
        return None
    value = values.pop()
    if not (value.isascii() and value.isdigit()):
        return None
    # Python refuses int() of more than 4300 digits; such a message is longer than any stream.
    return int(value) if len(value) <= 4000 else ENDLESS


async def serve(
    source: ByteSource, protocol: ServerProtocol, stopped: Callable[[], bool] = lambda: False
) -> None:
    """Reads and dispatches messages until the stream ends, the client sends `exit`, or
    `stopped()` turns true."""
    try:
        await _serve(source, protocol, stopped)
    finally:
        protocol.cancel_pending()


async def _serve(source: ByteSource, protocol: ServerProtocol, stopped: Callable[[], bool]) -> None:
    lost = False  # the last message's length was unknown: its body is still ahead
    while protocol.exit_code is None and not stopped():
        headers = await read_headers(source, resync=lost)
        if headers is None:
            return
        length = declared_length(headers)
        lost = length is None
        if length is None:
            log.error(
                "skipped a message without a valid Content-Length header (%r); reading on "
                "from the next Content-Length header",
                headers,
            )
            continue
        if length > MAX_MESSAGE_BYTES:
            log.error(
                "refused a message of %s bytes: the limit is %d bytes (%d MiB); skipping it",
                headers["content-length"][0][:40],
                MAX_MESSAGE_BYTES,
                MAX_MESSAGE_BYTES // (1024 * 1024),
            )
            if not await skip(source, length):
                log.error("the stream ended inside the refused message")
                return
            continue
        body = await read_exactly(source, length)
        if len(body) < length:
            log.error("the stream ended %d bytes into a %d-byte message", len(body), length)
            return
        dispatch(protocol, body)


def dispatch(protocol: ServerProtocol, body: bytes) -> None:
    """Parses one message and hands it to the protocol; no message can end the loop."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as error:  # bad UTF-8 or JSON, or nested too deep
        protocol.parse_failed(error)
        return
    try:
        message = protocol.structure_message(data)
    except JsonRpcException as error:  # already answered where the message was a request
        log.debug("refused a message: %s", error.message)
        return
    try:
        protocol.handle_message(message)
    except Exception:
        log.exception("failed to handle a message")


def private_stdout() -> BinaryIO:
    """The process's standard output as a stream of its own, with file descriptor 1 pointed at
    standard error from now on.

    On stdio, standard output is the protocol channel: one stray byte there (a `print`, a
    native library's message, a child process that inherited it) shifts every frame after it
    and the client waits for answers it can no longer read. The language server writes only
    to the stream returned here; whatever else writes to descriptor 1 ends up in stderr."""
    sys.stdout.flush()
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    return channel


def serve_stdio(server: LanguageServer) -> None:
    """Serves the client on stdin/stdout until it exits or hangs up.

    Standard input is read on a thread of its own rather than pygls's pool: after `exit` that
    thread may still be blocked in a read, and waiting for the pool would never return."""
    server._stop_event = threading.Event()
    channel = private_stdout()
    server.protocol.set_writer(StdoutWriter(channel))
    reader = ThreadPoolExecutor(1, thread_name_prefix="stdin")
    source = StdinSource(sys.stdin.buffer, reader)
    try:
        asyncio.run(serve(source, server.protocol, server._stop_event.is_set))
    except BrokenPipeError:
        log.error("the client closed its end of the connection")
    finally:
        reader.shutdown(wait=False, cancel_futures=True)
        server.shutdown()


def serve_tcp(server: LanguageServer, host: str, port: int) -> None:
    """Serves one client connection on `host:port` until it exits or hangs up."""
    server._stop_event = stop = threading.Event()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.protocol.set_writer(writer)
        await serve(StreamSource(reader), server.protocol, stop.is_set)
        server.shutdown()

    async def listen() -> None:
        server._server = await asyncio.start_server(connection, host, port)
        log.info("serving LSP on %s:%d", host, port)
        async with server._server:
            with contextlib.suppress(asyncio.CancelledError):
                await server._server.serve_forever()

    asyncio.run(listen())
