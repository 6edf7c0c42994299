# hsicli: set-up, demo, tests, benchmarks. `make demo` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch; elsewhere, set TORCH_SPEC="torch>=2.4" (or skip it) to keep your own build.
TORCH_SPEC ?= torch==2.13.0
# Where the CPU build comes from: on a stock Linux machine PyPI's torch is the multi-GB CUDA build,
# so PyTorch's CPU wheel index is added to pip's own (a CUDA index such as .../whl/cu126 for GPUs;
# TORCH_INDEX= for pip's configured index only). An index that does not answer within 5 s is
# skipped with a note, so offline mirrors keep working.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
SHARED_DATA := $(abspath ../shared/data)
# `hsi fetch` looks in HSI_DATA_DIR before downloading; use the shared benchmark files when present.
export HSI_DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)
DEMO_DIR ?= demo
DEMO_MODEL ?= svm
PYTEST_ARGS ?=

.PHONY: setup demo test test-all bench gallery completions clean

# "--extra-index-url TORCH_INDEX" when it is set and answers, else nothing (and a note on stderr).
torch_index_option = $$($(BIN)/python -c 'import sys, urllib.request as r; url = sys.argv[1]; url and r.urlopen(url, timeout=5) and print("--extra-index-url", url)' "$(TORCH_INDEX)" 2>/dev/null || echo "note: $(TORCH_INDEX) does not answer; torch comes from pip's configured index" >&2)

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(torch_index_option) "$(TORCH_SPEC)"
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
