# hsicli: set-up, demo, tests, benchmarks. `make demo` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch; elsewhere, set TORCH_SPEC="torch>=2.4" (or skip it) to keep your own build.
TORCH_SPEC ?= torch==2.13.0
SHARED_DATA := $(abspath ../shared/data)
# `hsi fetch` looks in HSI_DATA_DIR before downloading; use the shared benchmark files when present.
export HSI_DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)
DEMO_DIR ?= demo
DEMO_MODEL ?= svm
PYTEST_ARGS ?=

.PHONY: setup demo test test-all bench gallery completions clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

# The main job end to end on SalinasA: fetch, prep, split, train, predict, evaluate, plot.
demo: setup
	mkdir -p $(DEMO_DIR)
	cd $(DEMO_DIR) && PATH="$(abspath $(BIN)):$$PATH" sh ../examples/demo.sh $(DEMO_MODEL)

# Everyday tests: a few minutes on 2 cores, no root.
test: setup
	$(BIN)/pytest -q $(PYTEST_ARGS)

# Full tier (CI): everything, including the slow tests (SLURM, kill trials).
test-all: setup
	$(BIN)/pytest -q -m "" $(PYTEST_ARGS)

bench: setup
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

gallery: setup
	PATH="$(abspath $(BIN)):$$PATH" sh examples/gallery.sh docs/gallery

completions: setup
	$(BIN)/python completions/generate.py

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
