# Everything a fresh machine needs: `make demo` and `make test` create the venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format bench clean

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

test: lint
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q --durations=15

# Side-by-side measurements on this machine (minutes; not part of `make test`).
bench: $(STAMP)
	mkdir -p bench/results
	{ date -u; uname -m; nproc; \
	  $(BIN)/python -m bench.gemv --repeats 5; \
	  $(BIN)/python -m bench.decode_kernel --layers 2 --rounds 3 --tokens 24; \
	  HF_HUB_OFFLINE=1 $(BIN)/python -m bench.throughput --model demo; \
	  HF_HUB_OFFLINE=1 $(BIN)/python -m bench.keystroke --model demo --context 250 900; \
	} 2>&1 | tee bench/results/latest.txt

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
