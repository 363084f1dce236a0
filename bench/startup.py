"""Process start to first completed token of `replit-lsp --prompt`, four ways.

- first run: every cache empty, MAX's own included (a fresh XDG_CACHE_HOME), so MAX builds
  its kernels and the Mojo package of `model/graph/kernels/` before compiling the graph;
- cold compile: an empty compiled-model cache with MAX's caches warm (a new model or version);
- warm cache: the same compiled-model cache again, the compiled model read from it;
- serialized: `--serialized-model-path` with an empty cache, which must not compile at all.
The time is taken when the first completion text reaches stdout; the "model ready" line on
stderr says how the compiled model was obtained.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READY = re.compile(r"model ready in ([0-9.]+)s \((\w+)\)")
PROMPT = "def fibonacci(n):"


def first_completion(args: list[str], cache_dir: Path, xdg_cache: Path | None = None) -> dict:
    """Seconds from spawning the CLI to its first stdout byte, and what its stderr reported."""
    env = {**os.environ, "REPLIT_LSP_CACHE_DIR": str(cache_dir), "HF_HUB_OFFLINE": "1"}
    if xdg_cache is not None:
        env["XDG_CACHE_HOME"] = str(xdg_cache)
    command = [sys.executable, "-m", "lsp_server.cli", "--prompt", PROMPT, "--max-new-tokens", "8"]
    started = time.perf_counter()
    process = subprocess.Popen(
        command + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, bufsize=0
    )
    first = process.stdout.read(1)
    seconds = time.perf_counter() - started
    rest, errors = process.communicate(timeout=1800)
    if process.returncode != 0 or not first:
        raise RuntimeError(f"replit-lsp failed ({process.returncode}): {errors.decode()[-2000:]}")
    ready = READY.search(errors.decode())
    return {
        "seconds": seconds,
        "source": ready.group(2) if ready else "unknown",
        "model_ready_seconds": float(ready.group(1)) if ready else None,
    }


def measure_startup(model_args: list[str], progress=print) -> list[dict]:
    """Rows for the four start-ups of the model that `model_args` selects."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache, empty, serialized = Path(tmp, "cache"), Path(tmp, "empty"), Path(tmp, "model.mef")
        first = first_completion(model_args, Path(tmp, "first"), xdg_cache=Path(tmp, "xdg"))
        rows.append({"start": "first run, no caches", **first})
        progress(str(rows[-1]))
        cold = first_completion(
            [*model_args, "--save-to-serialized-model-path", str(serialized)], cache
        )
        rows.append({"start": "cold compile, MAX caches warm", **cold})
        progress(str(rows[-1]))
        rows.append({"start": "warm cache", **first_completion(model_args, cache)})
        progress(str(rows[-1]))
        loaded = first_completion([*model_args, "--serialized-model-path", str(serialized)], empty)
        rows.append({"start": "serialized", **loaded})
        progress(str(rows[-1]))
        if loaded["source"] != "serialized" or any(Path(empty).glob("**/*.mef")):
            raise RuntimeError("the serialized start compiled or cached a graph")
    return rows


if __name__ == "__main__":
    for row in measure_startup(sys.argv[1:] or ["--model", "demo"]):
        print(row)
