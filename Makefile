# Two commands: `make demo` and `make test`. Each installs what it needs into
# .venv; torch is pinned first so nothing pulls a CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install test test-all lint bench demo clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -m "not slow"

# Also the network-namespace host bed (tests marked netns), wherever it can
# run (root, iproute2); it skips, saying why, where it cannot.
test-all: lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/compress.py
	$(BIN)/python bench/compression_sim.py
	$(BIN)/python bench/transport.py
	$(BIN)/python bench/partner_selection.py
	$(BIN)/python bench/partner_choice.py
	$(BIN)/python bench/swarm.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/algorithm.py
	$(BIN)/python bench/attacks.py
	$(BIN)/python bench/hosts_reliability.py
	$(BIN)/python bench/calibration.py
	$(BIN)/python bench/swarm_calibration.py --figure docs/calibration.png
	$(BIN)/python bench/soak.py

demo: $(STAMP)
	$(BIN)/gossipfl demo

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis build *.egg-info
