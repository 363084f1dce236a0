"""Finds the model directory: a local path, the bundled demo model, or a Hugging Face repo."""

from __future__ import annotations

from pathlib import Path

from model.gguf_metadata import gguf_preference

DEFAULT_MODEL = "replit/replit-code-v1_5-3b"
DEMO_MODEL = "demo"
DEMO_DIR = Path(__file__).parent / "assets" / "replit-code-demo"

# Fetched when the repository has them; a GGUF file carries the config and tokenizer itself.
_WANTED = ("config.json", "tokenizer.json", "tokenizer_config.json")


class ModelNotFoundError(RuntimeError):
    """The model cannot be found locally and cannot be downloaded."""


def _pick_weight_files(files: list[str]) -> list[str]:
    """Safetensors when the repo has them, else one GGUF file, else PyTorch .bin: one copy."""
    top = [f for f in files if "/" not in f]
    for suffix in (".safetensors", ".gguf", ".bin"):
        chosen = [f for f in top if f.endswith(suffix)]
        if suffix == ".bin":
            chosen = [f for f in chosen if f.startswith("pytorch_model")]  # not training_args
        if suffix == ".gguf" and chosen:
            return [min(chosen, key=gguf_preference)]
        if chosen:
            return chosen + [f for f in top if f.endswith(suffix + ".index.json")]
    return []


def _cached(repo_id: str) -> Path | None:
    """The repository's snapshot in the local Hugging Face cache, if it is there."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    patterns = [*_WANTED, "*.safetensors", "*.safetensors.index.json", "*.gguf", "*.bin", "*.json"]
    try:
        return Path(snapshot_download(repo_id, local_files_only=True, allow_patterns=patterns))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None


def _download(repo_id: str) -> Path:
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    cached = _cached(repo_id)
    if cached is not None:
        return cached
    try:
        files = HfApi().list_repo_files(repo_id)
        wanted = [f for f in files if f in _WANTED] + _pick_weight_files(files)
        return Path(snapshot_download(repo_id, allow_patterns=wanted))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as error:
        raise ModelNotFoundError(
            f"The model {repo_id} is not in the local Hugging Face cache and could not be "
            f"downloaded ({type(error).__name__}); connect to the network once, pass "
            "--weight-path DIR with a local copy, or try the bundled demo model with --model demo."
        ) from None


def resolve_model_dir(weight_path: str | None, model: str = DEFAULT_MODEL) -> Path:
    """`--weight-path` wins; otherwise `--model` is `demo` or a Hugging Face repo id."""
    if weight_path:
        path = Path(weight_path).expanduser()
        if path.is_dir():
            return path
        if path.is_file():
            raise ModelNotFoundError(
                f"--weight-path {weight_path}: expected a model directory (the weights, with "
                "config.json and tokenizer.json unless they are GGUF), not a file"
            )
        if weight_path.count("/") == 1 and not weight_path.startswith((".", "/", "~")):
            return _download(weight_path)
        raise ModelNotFoundError(f"--weight-path {weight_path}: no such directory")
    if model == DEMO_MODEL:
        if not (DEMO_DIR / "config.json").is_file():
            raise ModelNotFoundError(f"the bundled demo model is missing from {DEMO_DIR}")
        return DEMO_DIR
    return _download(model)


def local_model_dir(weight_path: str | None, model: str = DEFAULT_MODEL) -> Path | None:
    """The model directory when it is already on this machine, else None; never downloads.

    A client of a remote server wants only the tokenizer, which is not worth gigabytes of
    weights: without a local copy it budgets the prompt in characters instead."""
    if weight_path and Path(weight_path).expanduser().is_dir():
        return Path(weight_path).expanduser()
    repo_id = weight_path or model
    if repo_id == DEMO_MODEL:
        return DEMO_DIR
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/", "~")):
        return None
    return _cached(repo_id)


def model_name(model_dir: Path) -> str:
    """A Hugging Face cache snapshot is named by its repo id, any other directory by its name."""
    parts = Path(model_dir).parts
    for index, part in enumerate(parts[:-2]):
        if part.startswith("models--") and parts[index + 1] == "snapshots":
            return part[len("models--") :].replace("--", "/")
    return Path(model_dir).name
