"""The one interface through which every front door runs the model.

The language server, the HTTP endpoint and the one-shot CLI all hand a generator prompt
tokens, `GenerationParams`, a cancel flag and a stop rule, and receive text pieces as they
become final, then one `GenerationStats` record. Two generators implement it: the local
engine (`generation/local.py`) and a remote OpenAI-compatible server
(`generation/remote/engine.py`); the front doors see only `TextGenerator`, so none knows
where the model runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from lsp_server.generation.backend import BackendControl
from lsp_server.generation.sampling import GenerationParams
from lsp_server.generation.stops import StopRule
from lsp_server.generation.stream import TextStream
from model.engine.prefill import Prefill


class TextTokenizer(Protocol):
    """What the front doors need of a tokenizer: the model's, or a stand-in that counts
    characters when a remote server's tokenizer is not available here."""

    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class TextGenerator(Protocol):
    """What every front door uses of the process's model, local or remote."""

    tokenizer: TextTokenizer
    max_length: int
    load_seconds: float
    compile_source: str
    weights_source: str

    @property
    def slots(self) -> int:
        """How many generations run at once."""
        ...

    @property
    def counters(self) -> Any:
        """A dataclass of what the generator has done, for status and health answers."""
        ...

    @property
    def model_name(self) -> str: ...

    @property
    def problem(self) -> str | None:
        """Why generation cannot run now (a remote server that is down), else None."""
        ...

    @property
    def backend(self) -> BackendControl | None:
        """The server behind the generator, for its state and settings; None when the
        model runs in this process."""
        ...

    def stream_text(
        self,
        prompt: Sequence[int],
        params: GenerationParams,
        *,
        cancelled: Callable[[], bool] = ...,
        stop: StopRule | None = None,
        speculate: bool = True,
        draft_context: Sequence[int] = (),
    ) -> TextStream:
        """A completion of `prompt` as final text pieces, stopped by `stop`. Raises
        `GenerationError` while iterated when the generator cannot give it. `speculate`
        and `draft_context` guide the local engine's speculation; a remote server decodes
        as it is set up to."""
        ...

    def prefill(self, prompt: Sequence[int], cancelled: Callable[[], bool]) -> Prefill | None:
        """Brings `prompt` into the cache with no generation, stopping soon after
        `cancelled()` turns true, so that a completion of it (or of more text after it)
        starts at once; None where the generator keeps no cache of its own."""
        ...
