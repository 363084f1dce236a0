# Everything a fresh machine needs: `make demo` and `make test` create the venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format llama-cpp bench-deps bench bench-full bench-experience soak \
	bench-context clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/replit-lsp --model demo --max-new-tokens 64 --prompt "def fibonacci(n):"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# llama-cpp-python is built from source (several minutes, once per machine) and its wheel kept
# in $(WHEELS); its server's dependencies come from the registry. The tests serve a model with
# `python -m llama_cpp.server`, and the benchmarks run llama.cpp through it.
WHEELS ?= $(HOME)/.cache/replit-lsp/wheels
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CPP_WHEEL := $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
LLAMA_CPP_STAMP := $(VENV)/.llama-cpp-$(LLAMA_CPP_VERSION)
# AVX2, FMA and F16C, without -march=native: the same build for AMD Zen 4 and Intel Xeon.
# A build tuned to this CPU: delete the wheel, then `make llama-cpp LLAMA_CPP_CMAKE_ARGS=-DGGML_NATIVE=ON`.
LLAMA_CPP_CMAKE_ARGS ?= -DGGML_NATIVE=OFF

$(LLAMA_CPP_STAMP): $(STAMP)
	ls $(LLAMA_CPP_WHEEL) >/dev/null 2>&1 || \
	  CMAKE_ARGS="$(LLAMA_CPP_CMAKE_ARGS)" $(BIN)/pip wheel --no-deps \
	    llama-cpp-python==$(LLAMA_CPP_VERSION) --wheel-dir $(WHEELS)
	$(BIN)/pip install --quiet "$$(ls $(LLAMA_CPP_WHEEL))[server]"
	touch $@

llama-cpp: $(LLAMA_CPP_STAMP)

test: lint llama-cpp
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q --durations=15

# Side-by-side measurements against llama.cpp on this machine (about an hour the first time,
# with model compiles and the llama.cpp build; not part of `make test`).
bench-deps: llama-cpp
	$(BIN)/pip install --quiet -e '.[bench]'

bench: bench-deps
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.suite --out bench/results

# The real model's shape (32 layers, random weights, bfloat16 and float32) against llama.cpp,
# one engine in memory at a time: about an hour, 40 GB of disk for checkpoints and GGUF files.
bench-full: bench-deps
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.full_size --out bench/results/full

# Keystroke to suggestion through the server process, with its latency features on, off and
# each off alone, on bench-full's checkpoints of the real shape in Q4_0, Q8_0 and bfloat16
# (written when missing): hours, one server at a time.
bench-experience: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.experience --full-size q4_0 q8_0 bfloat16 --label full32

# A half-hour editing session against one server on the demo model: hangs, errors, answers
# that change and memory over time (`python -m bench.soak --help` for the full-size model).
soak: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.soak --model demo --minutes 30

# Next-line completion on installed packages with and without context from other files.
bench-context: bench-deps
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.repo_context --model demo

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
