"""Compiling the graph, and keeping compiled models on disk so a restart never recompiles.

A compiled model (MAX's MEF, holding the prefill graph and, on the CPU, the decode graph)
depends on the graph's structure only: the config, the weight dtype, the device, the kernel
sources and the MAX version. The automatic cache keys the MEF by exactly those; the
weights are bound at load time, so two checkpoints of the same shape share one entry. An
explicitly serialized model carries the same key in a sidecar file so that loading one built
for another model fails with a clear message instead of wrong numbers.

A graph is compiled in a child process (`python -m model.engine.compiled`), which writes the
MEF and exits; the engine then loads it like a cached one. Compiling the full-size model holds
gigabytes of compiler memory that the process keeps once it is done, on top of the weights;
a child returns all of it, and a compiler crash costs the child, not the server.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import max as max_package
from max.driver import CPU, Accelerator, Device
from max.dtype import DType
from max.engine import CompiledModel, InferenceSession, read
from max.graph import DeviceRef

from model.config import ModelConfig
from model.graph.builder import GRAPH_VERSION, build_graphs
from model.graph.kernel_ops import kernels_digest
from model.graph.options import DEFAULT_GRAPH, GraphOptions
from model.progress import (
    COMPILING,
    LOADING_COMPILED,
    LoadProgress,
    ProgressCallback,
    heartbeat,
    ignore_progress,
)

log = logging.getLogger(__name__)


class SerializedModelError(ValueError):
    """A serialized model that cannot be used for this checkpoint and device."""


class CompileError(RuntimeError):
    """The graph compiler failed; the message ends with what it printed."""


_NOT_IN_GRAPH = ("max_seq_len", "eos_token_id")


def default_cache_dir() -> Path:
    root = os.environ.get("REPLIT_LSP_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "replit-lsp"
    )
    return Path(root) / "compiled"


def graph_key(
    config: ModelConfig, dtype: DType, device: Device, options: GraphOptions = DEFAULT_GRAPH
) -> str:
    """A digest of everything that changes the compiled graph."""
    facts = {
        "graph_version": GRAPH_VERSION,
        "cpu_kernels": kernels_digest() if options.cpu_kernels and device.is_host else None,
        "fused_block_bytes": options.fused_block_bytes,
        "bfloat16_dot": options.bfloat16_dot,
        "block_format": options.block_format,
        # max_seq_len and the eos id do not shape the graph (its lengths are symbolic).
        "config": {k: v for k, v in config.to_dict().items() if k not in _NOT_IN_GRAPH},
        "dtype": str(dtype),
        "device": device.label if device.is_host else f"{device.label}:{device.architecture_name}",
        "max": getattr(max_package, "__version__", None) or _max_version(),
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:32]


def _max_version() -> str:
    from importlib.metadata import version

    return version("max")


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_serialized(compiled: CompiledModel, path: Path, key: str) -> None:
    _atomic_write(Path(path), compiled.export_mef)
    sidecar = Path(f"{path}.json")
    _atomic_write(sidecar, lambda p: p.write_text(json.dumps({"graph_key": key}) + "\n"))


def load_serialized(path: Path, key: str) -> CompiledModel:
    path = Path(path)
    if not path.is_file():
        raise SerializedModelError(f"{path}: serialized model not found")
    sidecar = Path(f"{path}.json")
    if sidecar.is_file():
        try:
            saved_key = json.loads(sidecar.read_text()).get("graph_key")
        except (json.JSONDecodeError, AttributeError):
            saved_key = None
        if saved_key != key:
            raise SerializedModelError(
                f"{path}: this serialized model was compiled for a different model config, "
                "dtype, device or MAX version; save it again with --save-to-serialized-model-path"
            )
    try:
        return read(path)
    except Exception as error:  # MAX raises RuntimeError subclasses with native messages
        raise SerializedModelError(f"{path}: cannot read serialized model ({error})") from None


def obtain_compiled(
    config: ModelConfig,
    dtype: DType,
    device: Device,
    options: GraphOptions = DEFAULT_GRAPH,
    *,
    serialized_path: Path | None = None,
    save_path: Path | None = None,
    cache_dir: Path | None = None,
    progress: ProgressCallback = ignore_progress,
) -> tuple[CompiledModel, str]:
    """Returns the compiled model and how it was obtained ("serialized", "cache", "compiled")."""
    key = graph_key(config, dtype, device, options)
    if serialized_path is not None:
        progress(LoadProgress(LOADING_COMPILED, f"loading serialized model {serialized_path}"))
        compiled, how = load_serialized(serialized_path, key), "serialized"
    else:
        cached = (cache_dir or default_cache_dir()) / f"{key}.mef"
        compiled = None
        if cached.is_file():
            progress(LoadProgress(LOADING_COMPILED, f"loading the compiled model {cached}"))
            try:
                compiled, how = read(cached), "cache"
            except Exception:
                progress(LoadProgress(LOADING_COMPILED, f"ignoring unreadable {cached}"))
        if compiled is None:
            message = f"compiling the model graph, {config.n_layers} layers (minutes, once)"
            with heartbeat(progress, COMPILING, message):
                compiled = _compile_elsewhere(config, dtype, device, options, key, cached)
            how = "compiled"
    if save_path is not None:
        save_serialized(compiled, save_path, key)
        log.info("saved serialized model to %s", save_path)
    return compiled, how


def _compile_elsewhere(
    config: ModelConfig,
    dtype: DType,
    device: Device,
    options: GraphOptions,
    key: str,
    cached: Path,
) -> CompiledModel:
    """Compiles in a child process into the cache (or a temporary file, if the cache cannot
    be written) and reads the result."""
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        writable = os.access(cached.parent, os.W_OK)
    except OSError:
        writable = False
    target, scratch = cached, None
    if not writable:
        log.warning("cannot write the compiled-model cache %s; compiling for this run", cached)
        scratch = tempfile.TemporaryDirectory(prefix="replit-lsp-compile-")
        target = Path(scratch.name) / cached.name
    request = {
        "config": config.to_dict(),
        "dtype": dtype.name,
        "gpu": not device.is_host,
        "options": dataclasses.asdict(options),
        "key": key,
        "out": str(target),
        "parent": os.getpid(),
    }
    try:
        child = subprocess.run(
            [sys.executable, "-m", "model.engine.compiled"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
        )
        if child.returncode != 0 or not target.is_file():
            raise CompileError(
                f"compiling the model graph failed (exit code {child.returncode}): "
                + child.stderr.strip()[-2000:]
            )
        return read(target)
    finally:
        if scratch is not None:
            scratch.cleanup()


def _exit_with(parent: int) -> None:
    """Ends this process once `parent` has gone, so that no orphan goes on compiling after the
    server exits. (A `preexec_fn` would be simpler, but forking runs it in a copy of a process
    with other threads, where it can deadlock.)"""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def compile_to(request: dict) -> None:
    """The child's work: build the module, compile it, and save it with its key."""
    _exit_with(request["parent"])
    device = Accelerator() if request["gpu"] else CPU()
    options = GraphOptions(**request["options"])
    config = ModelConfig(**request["config"])
    dtype = DType[request["dtype"]]
    device_ref = DeviceRef.from_device(device)
    graphs = build_graphs(config, dtype, device_ref, options)
    compiled = InferenceSession(devices=[device]).compile(graphs)
    save_serialized(compiled, Path(request["out"]), request["key"])


if __name__ == "__main__":
    argparse.ArgumentParser(description="Compiles a model graph described on stdin.").parse_args()
    compile_to(json.load(sys.stdin))
    # Once the model is saved nothing is left to do, and the interpreter's teardown of MAX's
    # runtime threads can abort the process ("terminate called without an active exception",
    # after the file was written), which the parent would take for a failed compile.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
