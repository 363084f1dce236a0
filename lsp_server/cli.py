"""`replit-lsp`: one-shot completion, the language server, and the HTTP endpoint, on a local
model or a remote OpenAI-compatible server."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from lsp_server.lsp.settings import Settings
from lsp_server.remote import API_KEY_ENV, BackendError, RemoteOptions
from lsp_server.request_fields import parse_extra_fields
from lsp_server.resident import Options, ResidentModel, build_generator
from model.config import ConfigError
from model.engine.compiled import CompileError
from model.engine.options import EngineError, EngineOptions, OptionError
from model.hub import DEFAULT_MODEL, ModelNotFoundError, local_model_dir, resolve_model_dir
from model.sampling import SamplingParams
from model.weights.encodings import ENCODINGS

log = logging.getLogger("replit_lsp")

# The errors a user can fix from the command line, and a failed compile (whose message holds
# the compiler's own): printed as one sentence, no traceback.
USER_ERRORS = (
    ConfigError,
    EngineError,
    ModelNotFoundError,
    CompileError,
    BackendError,
    ValueError,
    OSError,
)


def extra_fields_argument(text: str) -> dict[str, Any]:
    """`--backend-fields`, refused at once with the reason when it is not usable."""
    try:
        return parse_extra_fields(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="replit-lsp",
        description="Inline code completions from a local Replit Code v1.5 model on MAX.",
    )
    mode = parser.add_argument_group(
        "what to run",
        "--prompt alone; or the language server (--stdio or --tcp, port 2087), "
        "the HTTP endpoint (--serve, port 8000), or one of each sharing one model",
    )
    mode.add_argument("--prompt", help="complete this text once, stream it to stdout and exit")
    mode.add_argument("--stdio", action="store_true", help="language server over stdin/stdout")
    mode.add_argument("--tcp", action="store_true", help="language server over TCP")
    mode.add_argument("--serve", action="store_true", help="OpenAI-compatible HTTP endpoint")
    mode.add_argument("--host", default="127.0.0.1", help="address for --tcp/--serve")
    mode.add_argument("--lsp-port", type=int, default=None, help="port for --tcp (2087)")
    mode.add_argument("--http-port", type=int, default=None, help="port for --serve (8000)")
    mode.add_argument(
        "--port", type=int, default=None, help="deprecated: --lsp-port with --tcp, else --http-port"
    )
    mode.add_argument(
        "--api-key",
        default=os.environ.get("REPLIT_LSP_API_KEY"),
        help="require this Bearer key on HTTP requests (default: $REPLIT_LSP_API_KEY)",
    )
    mode.add_argument(
        "--max-queue", type=int, default=16, help="HTTP requests waiting for a slot, then 429"
    )
    mode.add_argument(
        "--time-budget-ms",
        type=int,
        default=0,
        help="longest an editor completion may take; the complete lines so far (0: no limit)",
    )
    mode.add_argument(
        "--context-tokens",
        type=int,
        default=Settings.context_tokens,
        help="most prompt tokens given to context from other workspace files (0: none); "
        f"the editor's contextTokens setting overrides it (default {Settings.context_tokens})",
    )
    mode.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")

    model = parser.add_argument_group("model")
    model.add_argument("--weight-path", help="model directory in Hugging Face layout, or repo id")
    model.add_argument(
        "--model", default=DEFAULT_MODEL, help="Hugging Face repo id, or 'demo' for the bundled one"
    )
    model.add_argument("--quantization-encoding", choices=ENCODINGS, default="float32")
    model.add_argument("--max-length", type=int, default=512, help="prompt + completion tokens")
    model.add_argument("--max-new-tokens", type=int, default=-1, help="-1: up to --max-length")
    model.add_argument("--top-k", type=int, default=1, help="1 is greedy")
    model.add_argument("--temperature", type=float, default=1.0)
    model.add_argument("--seed", type=int, default=None)
    model.add_argument("--max-cache-batch-size", type=int, default=4, help="KV cache slots")
    model.add_argument(
        "--speculative-tokens",
        type=int,
        default=None,
        help="most tokens drafted from the context and checked in one run (greedy); 0: off "
        "(default: 4 for models whose decode reads weights op by op, 0 for small ones)",
    )
    model.add_argument("--use-gpu", action="store_true", help="run on a MAX-supported GPU")
    model.add_argument("--serialized-model-path", type=Path, default=None)
    model.add_argument("--save-to-serialized-model-path", type=Path, default=None)

    remote = parser.add_argument_group("remote backend (instead of a local model)")
    remote.add_argument(
        "--backend-url",
        help="send completions to this OpenAI-compatible server (replit-lsp --serve, vLLM, "
        "llama.cpp) instead of loading a model; --weight-path/--model then give the tokenizer",
    )
    remote.add_argument(
        "--backend-api-key",
        default=os.environ.get(API_KEY_ENV),
        help=f"Bearer key for the backend (default: ${API_KEY_ENV})",
    )
    remote.add_argument("--backend-model", help="the backend's model name (default: its first)")
    remote.add_argument(
        "--backend-timeout", type=float, default=30.0, help="seconds to wait for the next piece"
    )
    remote.add_argument(
        "--backend-fields",
        type=extra_fields_argument,
        default={},
        metavar="JSON",
        help="a JSON object of fields to add to each request to the backend, e.g. "
        "'{\"repeat_penalty\": 1.1}' (they replace the neutral sampling fields sent by default)",
    )
    return parser


def engine_options(args: argparse.Namespace) -> EngineOptions:
    return EngineOptions(
        model_dir=resolve_model_dir(args.weight_path, args.model),
        quantization_encoding=args.quantization_encoding,
        max_length=args.max_length,
        max_cache_batch_size=args.max_cache_batch_size,
        speculative_tokens=args.speculative_tokens,
        use_gpu=args.use_gpu,
        serialized_model_path=args.serialized_model_path,
        save_to_serialized_model_path=args.save_to_serialized_model_path,
    )


def remote_options(args: argparse.Namespace, url: str, model: str | None) -> RemoteOptions:
    """The client of the server at `url`: the tokenizer from a local copy of the model when
    there is one (nothing is downloaded), the context and concurrency from the command line."""
    return RemoteOptions(
        url=url,
        api_key=args.backend_api_key,
        model=model,
        tokenizer_dir=local_model_dir(args.weight_path, args.model),
        max_length=args.max_length,
        slots=args.max_cache_batch_size,
        read_timeout=args.backend_timeout,
        extra_fields=args.backend_fields,
    )


def generator_options(args: argparse.Namespace) -> Options:
    if args.backend_url:
        return remote_options(args, args.backend_url, args.backend_model)
    return engine_options(args)


def sampling_params(args: argparse.Namespace) -> SamplingParams:
    return SamplingParams(
        max_new_tokens=args.max_new_tokens,
        top_k=args.top_k,
        temperature=args.temperature,
        seed=args.seed,
    )


def trim_for_completion(tokens: list[int], max_length: int, max_new_tokens: int) -> list[int]:
    """Cuts the prompt from the front so the completion has room: `max_new_tokens` of it, or a
    quarter of `max_length` when the completion may run to the end."""
    room = max_new_tokens if max_new_tokens > 0 else max(1, max_length // 4)
    keep = max(1, max_length - min(room, max_length - 1))
    return tokens[-keep:]


def describe_error(error: BaseException) -> str:
    """An error as one sentence, naming engine options by their command-line flags."""
    if isinstance(error, OptionError):
        return f"--{error.option.replace('_', '-')} {error.problem}"
    return str(error)


def ports(args: argparse.Namespace) -> tuple[int, int]:
    """The language server's TCP port and the HTTP port, honouring the deprecated `--port`."""
    lsp_port, http_port = args.lsp_port, args.http_port
    if args.port is not None:
        flag = "--lsp-port" if args.tcp else "--http-port"
        log.warning("--port is deprecated: use %s", flag)
        if args.tcp:
            lsp_port = lsp_port or args.port
        else:
            http_port = http_port or args.port
    return lsp_port or 2087, http_port or 8000


def complete_once(args: argparse.Namespace) -> int:
    params = sampling_params(args)
    engine = build_generator(
        generator_options(args), lambda m: print(m, file=sys.stderr, flush=True)
    )
    tokens = engine.tokenizer.encode(args.prompt)
    if not tokens:
        print("replit-lsp: the prompt is empty", file=sys.stderr)
        return 2
    fitted = trim_for_completion(tokens, engine.max_length, params.max_new_tokens)
    if len(fitted) < len(tokens):
        print(
            f"warning: the prompt has {len(tokens)} tokens; keeping its last {len(fitted)} "
            f"to fit --max-length {engine.max_length}",
            file=sys.stderr,
        )
    with engine.stream_text(fitted, params) as stream:
        for text in stream:
            sys.stdout.write(text)
            sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


def run(args: argparse.Namespace) -> int:
    if args.prompt is not None:
        return complete_once(args)
    if not (args.stdio or args.tcp or args.serve):
        print("replit-lsp: give --prompt TEXT, --stdio, --tcp or --serve", file=sys.stderr)
        return 2
    resident = ResidentModel(
        lambda: generator_options(args),
        describe_error,
        remote=lambda url, model: remote_options(args, url, model),
    )
    defaults = sampling_params(args)
    lsp_port, http_port = ports(args)
    if args.context_tokens < 0:
        raise ValueError(f"--context-tokens must be 0 or more, got {args.context_tokens}")
    if args.time_budget_ms < 0:
        raise ValueError(f"--time-budget-ms must be 0 or more, got {args.time_budget_ms}")
    http = None
    if args.serve:
        from lsp_server.http.server import HttpServer

        http = HttpServer(
            resident,
            defaults,
            host=args.host,
            port=http_port,
            api_key=args.api_key,
            max_queue=args.max_queue,
        )
    if args.stdio or args.tcp:
        from lsp_server.lsp.server import run_language_server

        if http is not None:
            http.start_in_background()
        settings = Settings.from_defaults(
            defaults, time_budget_ms=args.time_budget_ms, context_tokens=args.context_tokens
        )
        run_language_server(
            resident,
            settings,
            defaults.seed,
            transport="stdio" if args.stdio else "tcp",
            host=args.host,
            port=lsp_port,
        )
    elif http is not None:
        http.serve_forever()
    return 0


def check_modes(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuses modes that cannot run together, instead of silently picking one."""
    if args.stdio and args.tcp:
        parser.error("--stdio and --tcp cannot be combined: the language server has one transport")
    if args.prompt is not None and (args.stdio or args.tcp or args.serve):
        parser.error("--prompt completes once and exits: give it without --stdio, --tcp or --serve")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_modes(parser, args)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request to a remote backend at INFO: one a keystroke.
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return run(args)
    except USER_ERRORS as error:
        print(f"replit-lsp: {describe_error(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
