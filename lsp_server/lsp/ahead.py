"""What the language server does ahead of the requests: the prompt computed where the cursor
rests (pre-warm), and the next suggestion started as soon as one is accepted (prefetch).

Both run on the completion workers and give way to any request: a request stops the pre-warm
and waits for it to let go of its cache slot (it stops within one short prefill run), and a
prefetch is the document's suggestion job, which the next request joins when its text is
where the prefetch started.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING

from cachetools import LRUCache
from lsprotocol import types

from lsp_server.feedback import REMEMBERED
from lsp_server.lsp.completion import PrewarmOutcome, prewarm, prewarm_next_window
from lsp_server.lsp.completion_log import log_record
from lsp_server.lsp.cursor_idle import Prewarm

if TYPE_CHECKING:
    from lsp_server.generation.protocol import TextGenerator
    from lsp_server.lsp.document_memory import DocumentMemory
    from lsp_server.lsp.server import CompletionServer
    from lsp_server.lsp.snapshot import CursorSnapshot

# How long a request waits for a stopped pre-warm to let go of its cache slot (it stops
# after its current prefill run; this only bounds a pathological case).
PREWARM_STOP_WAIT_SECONDS = 10.0


class AheadOfRequests:
    """The pre-warm and the prefetch of one language server."""

    def __init__(self, server: CompletionServer) -> None:
        self._server = server
        self._prewarm: Prewarm | None = None
        # Where the text before the cursor ends once a suggestion (by id) is accepted.
        self._accepted_ends: LRUCache[str, tuple[str, str]] = LRUCache(REMEMBERED)

    async def cursor_idle(self, uri: str, at: types.Position) -> None:
        """The cursor rests at `at`: computes the prompt a request there would use, unless
        the document has a request or a suggestion on the way."""
        server = self._server
        if not server.settings.prewarm or self._busy(uri):
            return
        engine = await server.engine_for(uri, 0)
        found = await server.snapshot(uri, at, server.settings, engine) if engine else None
        if engine is None or found is None or uri in server.requests:
            return
        await self.stop_prewarm()
        self._start_prewarm(prewarm, engine, uri, found)

    def suggestion_done(
        self,
        engine: TextGenerator,
        uri: str,
        snapshot: CursorSnapshot,
        position: types.Position,
        memory: DocumentMemory,
    ) -> None:
        """A suggestion at `snapshot` is done: if the document then has no request for a
        pause (`contextIdleMs`), prepares the window its prompt moves to next, where the
        prompt nearly fills it (`prewarm_next_window`). Waiting for the pause keeps this
        from holding up a keystroke while the user types on."""
        server = self._server
        if not server.settings.prewarm or server.loop is None:
            return
        if memory.next_window_start is not None:
            return  # prepared already for this window
        asked = memory.last_request

        def after_pause() -> None:
            warming = self._prewarm is not None and not self._prewarm_done()
            if memory.last_request != asked or warming or self._busy(uri):
                return
            if server.protocol.documents.get(uri) is None:
                return  # closed in the meantime
            self._start_prewarm(prewarm_next_window, engine, uri, (snapshot, position, memory))

        server.loop.call_soon_threadsafe(
            server.loop.call_later, server.settings.context_idle_ms / 1000, after_pause
        )

    def _busy(self, uri: str) -> bool:
        """Whether the document has a request, or a suggestion on the way."""
        job = self._server.jobs.get(uri)
        return uri in self._server.requests or (job is not None and job.running)

    def _prewarm_done(self) -> bool:
        warm = self._prewarm
        return warm is None or warm.future is None or warm.future.done()

    def _start_prewarm(
        self,
        work: Callable[[TextGenerator, CursorSnapshot, Callable[[], bool]], PrewarmOutcome],
        engine: TextGenerator,
        uri: str,
        found: tuple[CursorSnapshot, types.Position, DocumentMemory],
    ) -> None:
        """Runs `work` (a pre-warm) on a worker for the snapshot, position and memory `found`
        (as `CompletionServer.snapshot` gives them), keeping the windows it used in the
        memory and its prefills in the completion records."""
        server = self._server
        snapshot, position, memory = found
        warm = self._prewarm = Prewarm(uri)
        started = time.perf_counter()

        def finished(future: Future[PrewarmOutcome]) -> None:
            if future.cancelled() or future.exception() is not None:
                return
            outcome = future.result()
            memory.move_window(outcome.window_start)
            if outcome.next_window_start is not None:
                memory.next_window_start = outcome.next_window_start
            milliseconds = 1000 * (time.perf_counter() - started)
            for prefill in (outcome.prefill, outcome.next_prefill):
                if prefill is not None:
                    log_record(
                        server.completions.add_prefill(
                            uri, position.line, position.character, prefill, milliseconds
                        )
                    )

        warm.future = server.executor(engine).submit(work, engine, snapshot, warm.cancel.is_set)
        warm.future.add_done_callback(finished)

    async def stop_prewarm(self) -> None:
        """Stops the pre-warm, and waits for it to let go of its cache slot (which the
        request that stops it most likely wants)."""
        warm, self._prewarm = self._prewarm, None
        if warm is not None and warm.future is not None:
            warm.cancel.set()
            await asyncio.wait(
                [asyncio.wrap_future(warm.future)], timeout=PREWARM_STOP_WAIT_SECONDS
            )

    def shown(self, suggestion_id: str, uri: str, text_before: str) -> None:
        """A suggestion was shown: accepting it makes `text_before` the text before the
        cursor."""
        self._accepted_ends[suggestion_id] = (uri, text_before)

    def accepted(self, suggestion_id: str) -> None:
        """A suggestion was accepted: starts the next one after it."""
        end = self._accepted_ends.get(suggestion_id)
        server = self._server
        if end is not None and server.settings.prefetch_on_accept and server.loop is not None:
            server.loop.create_task(self._prefetch(*end))

    async def _prefetch(self, uri: str, text_before: str) -> None:
        """Starts the suggestion at the end of `text_before` (an accepted suggestion's end),
        if the document still reads so there and nothing else answers it already."""
        server = self._server
        document = server.protocol.documents.get(uri)
        if document is None or not document.source.startswith(text_before):
            return
        engine = await server.engine_for(uri, 0)
        line = text_before.count("\n")
        at = types.Position(line=line, character=len(text_before) - text_before.rfind("\n") - 1)
        found = (
            await server.snapshot(uri, at, server.settings, engine, "utf-32") if engine else None
        )
        if engine is None or found is None or uri in server.requests:
            return
        snapshot, position, memory = found
        job = server.jobs.get(uri)
        if job is not None and job.running:
            if job.typed_since(snapshot.text_before, snapshot.header) is not None:
                return  # the running suggestion goes on past what was accepted
            job.stop()
        keep = server.settings.recent_suggestions
        if memory.suggestions.answer(snapshot.text_before, snapshot.header, keep) is not None:
            return
        await self.stop_prewarm()
        if uri not in server.requests:
            server.start_job(engine, uri, snapshot, memory, position, time.perf_counter(), True)

    def close(self, uri: str) -> None:
        """Stops the pre-warm of a document that closed."""
        if self._prewarm is not None and self._prewarm.uri == uri:
            self._prewarm.cancel.set()

    def stop_all(self) -> None:
        if self._prewarm is not None:
            self._prewarm.cancel.set()
