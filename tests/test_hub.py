from pathlib import Path

import huggingface_hub
from huggingface_hub.errors import LocalEntryNotFoundError

from model import hub

GGUF_REPO = [
    ".gitattributes",
    "README.md",
    "replit-code-v1_5-3b-f32.gguf",
    "replit-code-v1_5-3b-bf16.gguf",
    "replit-code-v1_5-3b-q4_k_m.gguf",
]
BIN_REPO = [
    "README.md",
    "config.json",
    "configuration_mpt.py",
    "pytorch_model.bin",
    "tokenizer.json",
    "tokenizer_config.json",
    "training_args.bin",
]


def test_one_gguf_is_picked_bfloat16_first_then_float32():
    assert hub._pick_weight_files(GGUF_REPO) == ["replit-code-v1_5-3b-bf16.gguf"]
    assert hub._pick_weight_files(GGUF_REPO[:3]) == ["replit-code-v1_5-3b-f32.gguf"]
    assert hub._pick_weight_files(BIN_REPO) == ["pytorch_model.bin"]


def fake_hub(monkeypatch, files):
    """An uncached hub repository holding `files`; returns the allow_patterns downloaded."""
    requested = []

    def snapshot_download(repo_id, local_files_only=False, allow_patterns=None):
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        requested.append(sorted(allow_patterns))
        return "/cache/snapshot"

    class Api:
        def list_repo_files(self, repo_id):
            return files

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    return requested


def test_a_gguf_repository_is_downloaded_without_config_or_tokenizer_files(monkeypatch):
    requested = fake_hub(monkeypatch, GGUF_REPO)
    assert hub.resolve_model_dir(None, "modularai/replit-code-1.5") == Path("/cache/snapshot")
    assert requested == [["replit-code-v1_5-3b-bf16.gguf"]]


def test_a_bin_repository_gets_its_json_files_and_only_the_weights(monkeypatch):
    requested = fake_hub(monkeypatch, BIN_REPO)
    hub.resolve_model_dir(None)
    assert requested == [
        ["config.json", "pytorch_model.bin", "tokenizer.json", "tokenizer_config.json"]
    ]
