# hsicli: set-up, demo, tests, benchmarks. `make demo` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch; elsewhere, set TORCH_SPEC="torch>=2.4" (or skip it) to keep your own build.
TORCH_SPEC ?= torch==2.13.0
# Where the CPU build comes from: on a stock Linux machine PyPI's torch is the multi-GB CUDA build,
# so PyTorch's CPU wheel index is added to pip's own (a CUDA index such as .../whl/cu126 for GPUs;
# TORCH_INDEX= for pip's configured index only). Where pip is set up with an index or mirror of its
# own (pip config, PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS), that set-up is kept and
# nothing else is contacted.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
SHARED_DATA := $(abspath ../shared/data)
# `hsi fetch` looks in HSI_DATA_DIR before downloading; use the shared benchmark files when present.
export HSI_DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)
DEMO_DIR ?= demo
DEMO_MODEL ?= litec2anet
PYTEST_ARGS ?=

.PHONY: setup demo test test-all bench gallery completions clean

# "--extra-index-url TORCH_INDEX" on a stock pip; nothing (and a note on stderr) where pip has its own index.
torch_index_option = $$(if [ -z "$(TORCH_INDEX)" ]; then :; \
	elif [ -n "$$PIP_INDEX_URL$$PIP_EXTRA_INDEX_URL$$PIP_FIND_LINKS" ] || $(BIN)/pip config list 2>/dev/null | grep -qE '(index-url|find-links)='; then \
	echo "note: pip has its own index configured; torch comes from it (TORCH_INDEX is not added)" >&2; \
	else echo "--extra-index-url $(TORCH_INDEX)"; fi)

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
