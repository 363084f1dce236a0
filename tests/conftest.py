"""Shared fixtures: one small random checkpoint, its reference and one resident engine per
test session, the demo model's engine, and the reference's answers for the HTTP tests.

Compiling a graph takes a minute here, so every test that needs the model shares these.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from pytest_lsp import LanguageClient
from tokenizers import Tokenizer

from testkit.environment import TEST_ENVIRONMENT

os.environ.update(TEST_ENVIRONMENT)  # before the model's modules read it

from model.engine.engine import Engine  # noqa: E402
from model.engine.options import EngineOptions  # noqa: E402
from model.engine.speculation import SPECULATIVE_TOKENS  # noqa: E402
from model.hub import DEMO_DIR  # noqa: E402
from testkit.checkpoints import TINY_MAX_LENGTH, make_random_checkpoint  # noqa: E402
from testkit.lsp_client import ClientSetup, start_client, stop_client, wait_until_loaded  # noqa: E402
from testkit.reference import Expected, ReferenceMPT, greedy_answers  # noqa: E402
from testkit.servers import lsp_server_command  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_random_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny-mpt")


@pytest.fixture(scope="session")
def tiny_reference(tiny_model_dir: Path) -> ReferenceMPT:
    return ReferenceMPT(tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir: Path) -> Engine:
    # It speculates, as a large model does by default, so that the tests cover verify runs.
    options = EngineOptions(
        model_dir=tiny_model_dir,
        max_length=TINY_MAX_LENGTH,
        max_cache_batch_size=2,
        speculative_tokens=SPECULATIVE_TOKENS,
    )
    return Engine(options)


@pytest.fixture(scope="session")
def demo_engine() -> Engine:
    """The bundled trained model: unlike the random checkpoint, it writes code with lines."""
    return Engine(EngineOptions(model_dir=DEMO_DIR, max_length=512, max_cache_batch_size=1))


@pytest.fixture(scope="session")
def tokenizer(tiny_model_dir: Path) -> Tokenizer:
    """The tiny checkpoint's own Hugging Face tokenizer, independent of the engine's."""
    return Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))


@pytest.fixture(scope="session")
def expect(tiny_reference: ReferenceMPT, tokenizer: Tokenizer) -> Callable[[str, int], Expected]:
    """What the HTTP endpoint must answer for a prompt, greedy, from the reference."""
    return greedy_answers(tiny_reference, tokenizer)


@pytest.fixture(scope="session")
def model(tiny_model_dir: Path) -> str:
    """A model directory that is not a hub snapshot is served under the directory's name."""
    return tiny_model_dir.name


@pytest.fixture(scope="module")
def lsp_setup() -> ClientSetup:
    """How the module's `lsp_client` is started; a module that needs other arguments,
    capabilities or settings defines its own `lsp_setup`."""
    return ClientSetup()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def lsp_client(tiny_model_dir: Path, lsp_setup: ClientSetup) -> AsyncIterator[LanguageClient]:
    """`replit-lsp --stdio` on the tiny checkpoint, one per module: initialized as `lsp_setup`
    says, its answer kept as `initialize_result`, and past loading."""
    lsp, result = await start_client(
        lsp_server_command(tiny_model_dir, *lsp_setup.args),
        lsp_setup.capabilities,
        lsp_setup.options,
    )
    lsp.initialize_result = result  # type: ignore[attr-defined]
    await wait_until_loaded(lsp)
    yield lsp
    await stop_client(lsp)
