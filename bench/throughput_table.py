"""Prefill and decode tokens/s of this project's engine against llama.cpp on the same weights.

For one checkpoint and encoding, both runners are loaded (llama.cpp on a GGUF export of the
same tensors), their logits compared as a check that they run the same model, and then each
measurement alternates between them, repeat after repeat, on the same random prompts; medians
are reported with the MAX/llama.cpp ratio. Without llama-cpp-python only MAX is measured.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.runners import RemoteRunner, Runner
from model.config import load_config
from model.weights.gguf_export import export_gguf, export_gguf_dir
from model.weights.tensors import BLOCK_FORMATS

# Cache positions left over beyond the longest prompt and its decoded tokens.
SPARE_TOKENS = 8


@dataclass
class Row:
    model: str
    encoding: str
    metric: str  # "prefill N", "decode" or "decode at N"
    max_tokens_per_s: float
    llama_tokens_per_s: float | None

    @property
    def ratio(self) -> float | None:
        if self.llama_tokens_per_s is None:
            return None
        return self.max_tokens_per_s / self.llama_tokens_per_s

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def llama_cpp_available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def alone(runners: list[RemoteRunner], runner: RemoteRunner, measure, *args):
    """`measure(runner, *args)` with every other runner's process stopped meanwhile."""
    others = [other for other in runners if other is not runner]
    for other in others:
        other.pause()
    try:
        return measure(runner, *args)
    finally:
        for other in others:
            other.resume()


def _median_rates(runners: list[RemoteRunner], measure, repeats: int) -> dict[str, float]:
    """Median of `measure(runner, repeat)` per runner, the order alternating every repeat."""
    samples: dict[str, list[float]] = {runner.name: [] for runner in runners}
    for repeat in range(repeats):
        order = runners if repeat % 2 == 0 else runners[::-1]
        for runner in order:
            samples[runner.name].append(alone(runners, runner, measure, repeat))
    return {name: statistics.median(values) for name, values in samples.items()}


def measure_checkpoint(
    label: str,
    model_dir: Path,
    encoding: str,
    *,
    prefill_lengths: list[int],
    decode_tokens: int,
    editing_context: int,
    repeats: int,
    threads: int,
    work_dir: Path,
    with_llama: bool,
    use_gpu: bool = False,
    progress=print,
) -> tuple[list[Row], float | None]:
    """Rows for every prompt length that fits the model, plus decode after a short prompt and
    after `editing_context` tokens (or as many as fit); and the logit mismatch.

    In a block encoding both engines load one GGUF file written in it (this engine takes the
    blocks as they lie); otherwise llama.cpp loads a GGUF export of `model_dir`'s tensors.
    """
    config = load_config(model_dir)
    lengths = [n for n in prefill_lengths if n + 1 <= config.max_seq_len]
    max_length = min(
        config.max_seq_len, max(lengths + [editing_context]) + decode_tokens + SPARE_TOKENS
    )
    gguf_path = None
    if encoding in BLOCK_FORMATS:
        # Written afresh every run: a kept file would outlive a change to the exporter.
        gguf_path = export_gguf_dir(model_dir, work_dir / f"{label}-{encoding}", encoding)
        model_dir = gguf_path.parent
    runners: list[RemoteRunner] = [
        RemoteRunner(
            "MAX",
            model_dir=model_dir,
            encoding=encoding,
            max_length=max_length,
            use_gpu=use_gpu,
        )
    ]
    if with_llama:
        if gguf_path is None:
            gguf_path = export_gguf(model_dir, work_dir / f"{label}-{encoding}.gguf", encoding)
        runners.append(
            RemoteRunner("llama.cpp", gguf_path=gguf_path, max_length=max_length, threads=threads)
        )
    rng = np.random.default_rng(0)
    vocab = config.vocab_size
    try:
        mismatch = None
        probe = rng.integers(2, vocab, size=32).tolist()
        outputs = [
            alone(runners, runner, RemoteRunner.logits, probe) for runner in runners
        ]  # also the warm-up
        if len(outputs) == 2:
            mismatch = float(np.abs(outputs[0] - outputs[1]).max() / np.abs(outputs[1]).max())
            progress(f"{label} {encoding}: MAX vs llama.cpp logits differ by {mismatch:.1e}")
        rows = []
        for length in lengths:
            prompts = [rng.integers(2, vocab, size=length).tolist() for _ in range(repeats)]

            def prefill(runner: Runner, repeat: int, prompts=prompts, length=length) -> float:
                return length / runner.prefill_seconds(prompts[repeat])

            rates = _median_rates(runners, prefill, repeats)
            rows.append(
                Row(label, encoding, f"prefill {length}", rates["MAX"], rates.get("llama.cpp"))
            )
            progress(str(rows[-1].as_dict()))
        # Decode after a short prompt (the weights' cost alone, which the roofline uses), then
        # at an editing context, where each step also reads the whole KV cache.
        editing_context = min(editing_context, max_length - decode_tokens - SPARE_TOKENS)
        for context, metric in ((16, "decode"), (editing_context, f"decode at {editing_context}")):
            prompts = [rng.integers(2, vocab, size=context).tolist() for _ in range(repeats)]

            def decode(runner: Runner, repeat: int, prompts=prompts) -> float:
                steps, seconds = runner.decode_seconds(prompts[repeat], decode_tokens)
                return steps / seconds

            rates = _median_rates(runners, decode, repeats)
            rows.append(Row(label, encoding, metric, rates["MAX"], rates.get("llama.cpp")))
            progress(str(rows[-1].as_dict()))
        return rows, mismatch
    finally:
        for runner in runners:
            runner.close()
