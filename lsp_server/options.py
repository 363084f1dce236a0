"""Every option of replit-lsp in one table: its command-line flag, its editor setting, its type,
default and meaning.

The command line's parser, the language server's settings and the HTTP server take their
defaults from here, and messages name an option through it (by its flag on the command line,
by its setting name in an editor), so that a default or a name is written once. The editors'
own declarations of the settings (`editors/`) are checked against it by the tests.

An option with both a flag and a setting is set for the process by the command line and for
one editor by the setting, which takes precedence.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from types import MappingProxyType
from typing import Any

from lsp_server.generation.remote.options import API_KEY_ENV
from lsp_server.generation.remote.request_fields import parse_extra_fields
from lsp_server.option import Option
from model.engine.options import AUTO, EngineOptions
from model.hub import DEFAULT_MODEL
from model.weights.encodings import ENCODINGS

# The engine states its own defaults, which tests and benchmarks build it with; the table
# reads them from there.
_ENGINE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(EngineOptions)}
# The one-shot completion's encoding when none is given: the engine's own default.
PROMPT_ENCODING = _ENGINE_DEFAULTS["quantization_encoding"]

# The --help sections the flags are listed in.
RUN = "what to run"
MODEL = "model"
REMOTE = "remote backend (instead of a local model)"


def _request_fields(text: str) -> dict[str, Any]:
    """`--backend-fields`, refused at once with the reason when it is not usable."""
    try:
        return parse_extra_fields(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


OPTIONS: tuple[Option, ...] = (
    # What to run.
    Option(
        "prompt",
        str,
        None,
        "complete this text once, stream it to stdout and exit",
        flag="--prompt",
        group=RUN,
    ),
    Option("stdio", bool, False, "language server over stdin/stdout", flag="--stdio", group=RUN),
    Option("tcp", bool, False, "language server over TCP", flag="--tcp", group=RUN),
    Option("serve", bool, False, "OpenAI-compatible HTTP endpoint", flag="--serve", group=RUN),
    Option("host", str, "127.0.0.1", "address for --tcp/--serve", flag="--host", group=RUN),
    Option("lsp_port", int, 2087, "port for --tcp", flag="--lsp-port", group=RUN),
    Option("http_port", int, 8000, "port for --serve", flag="--http-port", group=RUN),
    Option(
        "port",
        int,
        None,
        "deprecated: --lsp-port with --tcp, else --http-port",
        flag="--port",
        group=RUN,
    ),
    Option(
        "api_key",
        str,
        None,
        "require this Bearer key on HTTP requests",
        flag="--api-key",
        group=RUN,
        env="REPLIT_LSP_API_KEY",
    ),
    Option(
        "max_queue",
        int,
        16,
        "HTTP requests waiting for a slot, then 429",
        flag="--max-queue",
        group=RUN,
    ),
    Option(
        "time_budget_ms",
        int,
        300,
        "how long an editor request waits for its whole suggestion: past it, a multi-line "
        "suggestion is answered as soon as a line is complete, with the complete lines so "
        "far, and the rest is generated on for the next request (0: wait for all of it)",
        flag="--time-budget-ms",
        setting="timeBudgetMs",
        group=RUN,
    ),
    Option(
        "context_tokens",
        int,
        512,
        "most prompt tokens given to context from other workspace files (0: none; at most "
        "half the prompt)",
        flag="--context-tokens",
        setting="contextTokens",
        group=RUN,
    ),
    Option(
        "recent_suggestions",
        int,
        16,
        "suggestions kept per document: a request at the text one was made for, or typing "
        "what one says, is answered from them with no model run (0: only typing through the "
        "last one)",
        flag="--recent-suggestions",
        setting="recentSuggestions",
        group=RUN,
    ),
    Option(
        "log_level", str, "INFO", "DEBUG, INFO, WARNING or ERROR", flag="--log-level", group=RUN
    ),
    # The model.
    Option(
        "weight_path",
        str,
        None,
        "model directory in Hugging Face layout, or repo id",
        flag="--weight-path",
        group=MODEL,
    ),
    Option(
        "model",
        str,
        DEFAULT_MODEL,
        "Hugging Face repo id, or 'demo' for the bundled one",
        flag="--model",
        group=MODEL,
    ),
    Option(
        "quantization_encoding",
        str,
        None,
        f"how the weights are held; {AUTO}: on a CPU, for a model of a billion weights or "
        "more (the 3B), a Q8_0 or Q4_0 GGUF's blocks as they lie, else q4_0; bfloat16 on a "
        "GPU; float32 for small models (default: auto for the "
        f"servers, {PROMPT_ENCODING} for --prompt, whose answer is the exact model's)",
        flag="--quantization-encoding",
        group=MODEL,
        choices=(*ENCODINGS, AUTO),
    ),
    Option(
        "max_length",
        int,
        _ENGINE_DEFAULTS["max_length"],
        "prompt + completion tokens",
        flag="--max-length",
        group=MODEL,
    ),
    Option(
        "max_new_tokens",
        int,
        -1,
        "most tokens per completion; -1: up to --max-length",
        flag="--max-new-tokens",
        setting="maxNewTokens",
        setting_default=64,
        group=MODEL,
    ),
    Option("top_k", int, 1, "1 is greedy", flag="--top-k", setting="topK", group=MODEL),
    Option(
        "temperature",
        float,
        1.0,
        "sampling temperature (0 is greedy)",
        flag="--temperature",
        setting="temperature",
        group=MODEL,
    ),
    Option("seed", int, None, "makes sampling reproducible", flag="--seed", group=MODEL),
    Option(
        "max_cache_batch_size",
        int,
        _ENGINE_DEFAULTS["max_cache_batch_size"],
        "KV cache slots",
        flag="--max-cache-batch-size",
        group=MODEL,
    ),
    Option(
        "speculative_tokens",
        int,
        None,
        "tokens drafted from the context and checked in each run (greedy); 0: off "
        "(default: up to 4, each run as many as measured to pay; 0 for small models)",
        flag="--speculative-tokens",
        group=MODEL,
    ),
    Option("use_gpu", bool, False, "run on a MAX-supported GPU", flag="--use-gpu", group=MODEL),
    Option(
        "serialized_model_path",
        Path,
        None,
        "load this compiled model instead of compiling",
        flag="--serialized-model-path",
        group=MODEL,
    ),
    Option(
        "save_to_serialized_model_path",
        Path,
        None,
        "write the compiled model (MAX MEF) here",
        flag="--save-to-serialized-model-path",
        group=MODEL,
    ),
    # A remote backend instead of the local model.
    Option(
        "backend_url",
        str,
        None,
        "send completions to this OpenAI-compatible server (replit-lsp --serve, vLLM, "
        "llama.cpp) instead of loading a model; --weight-path/--model then give the tokenizer",
        flag="--backend-url",
        setting="backendUrl",
        setting_default="",  # the command line's
        group=REMOTE,
    ),
    Option(
        "backend_api_key",
        str,
        None,
        "Bearer key for the backend",
        flag="--backend-api-key",
        group=REMOTE,
        env=API_KEY_ENV,
    ),
    Option(
        "backend_model",
        str,
        None,
        "the backend's model name, by default its first",
        flag="--backend-model",
        setting="backendModel",
        setting_default="",  # the command line's
        group=REMOTE,
    ),
    Option(
        "backend_timeout",
        float,
        30.0,
        "seconds to wait for the next piece",
        flag="--backend-timeout",
        group=REMOTE,
    ),
    Option(
        "backend_fields",
        dict,
        MappingProxyType({}),
        "a JSON object of fields to add to each request to the backend, e.g. "
        "'{\"repeat_penalty\": 1.1}' (they replace the neutral sampling fields sent by default)",
        flag="--backend-fields",
        setting="backendFields",
        group=REMOTE,
        parse=_request_fields,
        metavar="JSON",
    ),
    # The editor's alone.
    Option("max_lines", int, 8, "most lines in a multi-line completion", setting="maxLines"),
    Option(
        "invoked_max_new_tokens",
        int,
        128,
        "most tokens per completion the user asked for (triggerKind Invoked)",
        setting="invokedMaxNewTokens",
    ),
    Option(
        "enabled_languages",
        tuple,
        (),
        "language ids to complete in; empty: every language",
        setting="enabledLanguages",
    ),
    Option(
        "request_wait_seconds",
        float,
        30.0,
        "how long a request waits for the model to load before answering empty",
        setting="requestWaitSeconds",
    ),
    Option(
        "prepend_file_path",
        bool,
        False,
        "start the prompt with a comment naming the file",
        setting="prependFilePath",
    ),
    Option(
        "speculation",
        bool,
        True,
        "draft tokens from the context where the engine speculates (--speculative-tokens); "
        "false turns it off for this client",
        setting="speculation",
    ),
    Option(
        "answer_timeout_seconds",
        float,
        60.0,
        "the longest a request waits for its completion: then it is answered empty and the "
        "generation stops, so no state of the workers can leave a request unanswered",
        setting="answerTimeoutSeconds",
    ),
    Option(
        "prewarm",
        bool,
        True,
        "compute the prompt where the cursor rests (the client's replitLsp/cursorIdle), so "
        "the first keystroke there pays only for its own tokens; and, where the prompt nearly "
        "fills its window, the window it moves to next (also after a pause in typing)",
        setting="prewarm",
    ),
    Option(
        "prefetch_on_accept",
        bool,
        True,
        "start the next suggestion as soon as one is accepted",
        setting="prefetchOnAccept",
    ),
    Option(
        "context_open_documents",
        bool,
        True,
        "quote the other open documents",
        setting="contextOpenDocuments",
    ),
    Option(
        "context_recent_documents",
        bool,
        True,
        "quote recently closed documents",
        setting="contextRecentDocuments",
    ),
    Option(
        "context_definitions",
        bool,
        True,
        "quote the definitions of names used near the cursor and of names the file imports",
        setting="contextDefinitions",
    ),
    Option(
        "context_exclude",
        tuple,
        (),
        "glob patterns (gitignore syntax) of files never read or quoted",
        setting="contextExclude",
    ),
    Option(
        "context_idle_ms",
        int,
        1000,
        "the pause after which the context is chosen again (and the next prompt window prepared)",
        setting="contextIdleMs",
    ),
)

_BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}


def option_named(name: str) -> Option:
    """The option that fills the field `name`."""
    return _BY_NAME[name]


def flag(name: str) -> str:
    """The command-line flag of the option that fills `name`; its name where it has no flag,
    so a message about any option can be worded."""
    found = _BY_NAME.get(name)
    return found.flag if found is not None and found.flag is not None else name


def editor_settings() -> tuple[Option, ...]:
    """The options an editor sets, in the table's order."""
    return tuple(option for option in OPTIONS if option.setting is not None)


# The --help sections' descriptions.
GROUP_DESCRIPTIONS: dict[str, str | None] = {
    RUN: f"--prompt alone; or the language server (--stdio or --tcp, port "
    f"{option_named('lsp_port').default}), the HTTP endpoint (--serve, port "
    f"{option_named('http_port').default}), or one of each sharing one model",
    MODEL: None,
    REMOTE: None,
}
