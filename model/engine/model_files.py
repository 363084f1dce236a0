"""What the engine reads of the model directory before it compiles: the config, checked
against the options, and the tokenizer with the end-of-text id generation stops at."""

from __future__ import annotations

from dataclasses import dataclass

from model.config import ModelConfig, load_config
from model.engine.options import EngineOptions, check_max_length
from model.tokenizer import Tokenizer


@dataclass(frozen=True)
class ModelFiles:
    config: ModelConfig
    tokenizer: Tokenizer
    eos_id: int | None  # the tokenizer's, else the config's


def read_model_files(options: EngineOptions) -> ModelFiles:
    config = load_config(options.model_dir)
    check_max_length(options, config)
    tokenizer = Tokenizer(options.model_dir)
    eos_id = tokenizer.eos_id if tokenizer.eos_id is not None else config.eos_token_id
    return ModelFiles(config, tokenizer, eos_id)
