"""`replit-lsp`: one-shot completion, the language server, and the HTTP endpoint, on a local
model or a remote OpenAI-compatible server."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from lsp_server.generation.errors import GenerationError
from lsp_server.generation.remote.options import RemoteOptions
from lsp_server.generation.sampling import (
    AS_MUCH_AS_FITS,
    GenerationParams,
    TokenLimit,
    token_limit,
)
from lsp_server.lsp.settings import Settings
from lsp_server.modes import Mode, ModeConflict, NoMode, choose_mode
from lsp_server.option import Option
from lsp_server.options import GROUP_DESCRIPTIONS, OPTIONS, PROMPT_ENCODING, flag, option_named
from lsp_server.resident import Options, ResidentModel, build_generator
from lsp_server.version import PACKAGE
from model.config import ConfigError
from model.engine.compiled import CompileError
from model.engine.options import AUTO, EngineError, EngineOptions, OptionError
from model.hub import ModelNotFoundError, local_model_dir, resolve_model_dir

if TYPE_CHECKING:
    from lsp_server.http.server import HttpServer

log = logging.getLogger("replit_lsp")

# The errors a user can fix from the command line, and a failed compile (whose message holds
# the compiler's own): printed as one sentence, no traceback.
USER_ERRORS = (
    ConfigError,
    EngineError,
    ModelNotFoundError,
    CompileError,
    GenerationError,
    ValueError,
    OSError,
)


# Left unset by the parser: the deprecated `--port` may stand for either (see `ports`).
PORTS = ("lsp_port", "http_port")


def flag_help(option: Option) -> str:
    """The option's help with what the table says beside it: the editor setting that
    overrides it, and its default."""
    text = option.help
    if option.setting is not None:
        text += f"; the editor's {option.setting} setting takes precedence"
    shown = option.shown_default
    if shown is not None:
        text += f" (default: {shown})"
    return text.replace("%", "%%")  # argparse formats help with %


def flag_arguments(option: Option) -> dict[str, Any]:
    """What `add_argument` needs to read the option's flag as the table describes it."""
    if option.type is bool:
        return {"dest": option.name, "action": "store_true", "help": flag_help(option)}
    if option.env is not None:
        default = os.environ.get(option.env)
    elif option.name in PORTS:
        default = None
    else:
        default = option.default
    return {
        "dest": option.name,
        "type": option.parse or option.type,
        "default": default,
        "choices": option.choices,
        "metavar": option.metavar,
        "help": flag_help(option),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PACKAGE,
        description="Inline code completions from a local Replit Code v1.5 model on MAX.",
    )
    groups = {
        title: parser.add_argument_group(title, description)
        for title, description in GROUP_DESCRIPTIONS.items()
    }
    for option in OPTIONS:
        if option.flag is not None and option.group is not None:
            groups[option.group].add_argument(option.flag, **flag_arguments(option))
    return parser


def engine_options(args: argparse.Namespace) -> EngineOptions:
    """The engine the command line asks for. Without an encoding the servers take the one that
    suits the machine and the model, and `--prompt` the exact model."""
    encoding = args.quantization_encoding
    if encoding is None:
        encoding = PROMPT_ENCODING if args.prompt is not None else AUTO
    return EngineOptions(
        model_dir=resolve_model_dir(args.weight_path, args.model),
        quantization_encoding=encoding,
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


def sampling_params(args: argparse.Namespace) -> GenerationParams:
    return GenerationParams(
        max_new_tokens=token_limit(args.max_new_tokens),
        top_k=args.top_k,
        temperature=args.temperature,
        seed=args.seed,
    )


def trim_for_completion(
    tokens: list[int], max_length: int, max_new_tokens: TokenLimit
) -> list[int]:
    """Cuts the prompt from the front so the completion has room: `max_new_tokens` of it, or a
    quarter of `max_length` when the completion may run to the end."""
    room = max(1, max_length // 4) if max_new_tokens is AS_MUCH_AS_FITS else max_new_tokens
    keep = max(1, max_length - min(room, max_length - 1))
    return tokens[-keep:]


def describe_error(error: BaseException) -> str:
    """An error as one sentence, naming engine options by their command-line flags."""
    if isinstance(error, OptionError):
        return f"{flag(error.option)} {error.problem}"
    return str(error)


def ports(args: argparse.Namespace, mode: Mode) -> tuple[int, int]:
    """The language server's TCP port and the HTTP port, honouring the deprecated `--port`."""
    lsp_port, http_port = args.lsp_port, args.http_port
    if args.port is not None:
        tcp = mode.transport == "tcp"
        log.warning(
            "%s is deprecated: use %s", flag("port"), flag("lsp_port" if tcp else "http_port")
        )
        if tcp:
            lsp_port = lsp_port or args.port
        else:
            http_port = http_port or args.port
    return (
        lsp_port or option_named("lsp_port").default,
        http_port or option_named("http_port").default,
    )


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
            f"to fit {flag('max_length')} {engine.max_length}",
            file=sys.stderr,
        )
    with engine.stream_text(fitted, params) as stream:
        for text in stream:
            sys.stdout.write(text)
            sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


def check_not_negative(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        value = getattr(args, name)
        if value < 0:
            raise ValueError(f"{flag(name)} must be 0 or more, got {value}")


def http_server(
    args: argparse.Namespace, resident: ResidentModel, defaults: GenerationParams, port: int
) -> HttpServer:
    from lsp_server.http.server import HttpServer

    return HttpServer(
        resident,
        defaults,
        host=args.host,
        port=port,
        api_key=args.api_key,
        max_queue=args.max_queue,
    )


def run_servers(args: argparse.Namespace, mode: Mode) -> int:
    """The language server, the HTTP endpoint or both, on one resident model."""
    resident = ResidentModel(
        lambda: generator_options(args),
        describe_error,
        remote=lambda url, model: remote_options(args, url, model),
    )
    defaults = sampling_params(args)
    lsp_port, http_port = ports(args, mode)
    check_not_negative(args, "context_tokens", "time_budget_ms", "recent_suggestions")
    if mode.transport is None:
        http_server(args, resident, defaults, http_port).serve_forever()
        return 0
    if mode.serves_http:
        http_server(args, resident, defaults, http_port).start_in_background()
    from lsp_server.lsp.process import run_language_server

    settings = Settings.from_defaults(
        defaults,
        time_budget_ms=args.time_budget_ms,
        context_tokens=args.context_tokens,
        recent_suggestions=args.recent_suggestions,
    )
    run_language_server(
        resident, settings, defaults.seed, transport=mode.transport, host=args.host, port=lsp_port
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        mode = choose_mode(args.prompt, args.stdio, args.tcp, args.serve)
    except ModeConflict as conflict:
        parser.error(str(conflict))
    except NoMode as missing:
        print(f"replit-lsp: {missing}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request to a remote backend at INFO: one a keystroke.
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return complete_once(args) if mode is Mode.PROMPT else run_servers(args, mode)
    except USER_ERRORS as error:
        print(f"replit-lsp: {describe_error(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
