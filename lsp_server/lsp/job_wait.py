"""How a request waits for the suggestion job that answers it.

It waits for the job to finish, and no longer than its own limits: at the time budget it is
answered with the complete lines so far while the job goes on (the rest goes to the
document's memory for the requests that follow); when a newer request of the document
replaces it, it is answered empty at once; at the answer timeout it is answered empty and
the job is stopped. A request the client cancels stops the job unless another request waits
for it or it is wanted anyway.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from lsp_server.lsp.suggestion_job import SuggestionJob

# How often a request past its time budget looks for a complete line in the job's text.
EARLY_POLL_SECONDS = 0.02


@dataclass(frozen=True)
class JobAnswer:
    """What a request gets of a job: the text to show, and how it came."""

    text: str
    how: str  # "done", "early", "superseded", "timeout"


async def await_job(
    job: SuggestionJob,
    typed: str,
    superseded: asyncio.Event,
    deadline: float | None,
    answer_limit: float,
) -> JobAnswer:
    """The answer for a request that typed `typed` since the job's text, waiting at most
    `answer_limit` seconds; `deadline` (time.monotonic()) is the time budget's end."""
    assert job.future is not None
    job.waiters += 1
    # Never cancelled: cancelling a wrapper of a job still queued would cancel the job.
    finished = asyncio.wrap_future(job.future)
    finished.add_done_callback(lambda future: future.cancelled() or future.exception())
    replaced = asyncio.ensure_future(superseded.wait())
    give_up = time.monotonic() + answer_limit
    try:
        while True:
            now = time.monotonic()
            if deadline is None or now < deadline:
                wake = min(give_up, deadline) if deadline is not None else give_up
            else:
                wake = min(give_up, now + EARLY_POLL_SECONDS)
            await asyncio.wait(
                [finished, replaced],
                timeout=max(0.0, wake - now),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if finished.done():
                text = finished.result().text  # a GenerationError reaches the caller
                return JobAnswer(text[len(typed) :] if text.startswith(typed) else "", "done")
            if superseded.is_set():
                return JobAnswer("", "superseded")
            if time.monotonic() >= give_up:
                job.stop()
                return JobAnswer("", "timeout")
            if deadline is not None and time.monotonic() >= deadline:
                early = job.early_answer(typed)
                if early:
                    job.keep_running = True
                    return JobAnswer(early, "early")
    finally:
        replaced.cancel()
        job.waiters -= 1
        if not finished.done() and job.waiters == 0 and not job.keep_running:
            job.stop()
