"""One streamed completion from the remote server, as `TextStream` consumes it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from lsp_server.generation.errors import GenerationError
from lsp_server.generation.remote.transport import EventFeed
from lsp_server.generation.remote.wire import StreamEnd

# How often a worker waiting for the next piece looks at its cancel flag: the most a
# superseded or cancelled completion keeps the remote generating.
POLL_SECONDS = 0.01

RemoteEvent = str | StreamEnd | GenerationError


class RemoteCompletion:
    """Text pieces, and the costs the server reports (its usage), or those counted here when
    the stream was closed early. `start` sends the request when the pieces are first asked
    for; `closed_early` hears of a stream left before the server finished it."""

    def __init__(
        self,
        start: Callable[[], EventFeed[RemoteEvent]],
        prompt_tokens: int,
        cancelled: Callable[[], bool],
        closed_early: Callable[[], None],
    ) -> None:
        self.prompt_tokens = prompt_tokens
        self.reused_tokens = 0
        self.finish_reason: str | None = None
        self.prefill_seconds = 0.0
        # The local engine's own work: none here (the server speculates as it is set up to).
        self.graph_runs = self.draft_tokens = self.accepted_tokens = 0
        self._pieces = 0
        self._reported_tokens: int | None = None
        self._iterator = self._run(start, cancelled, closed_early)

    @property
    def generated_tokens(self) -> int:
        """The server's count; for a stream closed early, its pieces, which these servers
        send one per token."""
        return self._pieces if self._reported_tokens is None else self._reported_tokens

    def __iter__(self) -> Iterator[str]:
        return self._iterator

    def close(self) -> None:
        self._iterator.close()

    def _run(
        self,
        start: Callable[[], EventFeed[RemoteEvent]],
        cancelled: Callable[[], bool],
        closed_early: Callable[[], None],
    ) -> Iterator[str]:
        started = time.perf_counter()
        feed = start()
        finished = False  # the request has emitted its last event
        try:
            while True:
                event = feed.get(POLL_SECONDS)
                if event is None:
                    if cancelled():
                        return
                    continue
                finished = isinstance(event, GenerationError | StreamEnd)
                if isinstance(event, GenerationError):
                    raise event
                if isinstance(event, StreamEnd):
                    self._finish(event)
                    return
                if cancelled():
                    return
                if not self._pieces:
                    self.prefill_seconds = time.perf_counter() - started
                self._pieces += 1
                yield event
        finally:
            if not finished:  # closed early: the server stops when its client leaves
                feed.cancel()
                closed_early()

    def _finish(self, end: StreamEnd) -> None:
        self.finish_reason = end.finish_reason
        usage = end.usage
        if isinstance(usage.get("prompt_tokens"), int):
            self.prompt_tokens = usage["prompt_tokens"]
        if isinstance(usage.get("completion_tokens"), int):
            self._reported_tokens = usage["completion_tokens"]
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
            self.reused_tokens = details["cached_tokens"]
