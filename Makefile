# Two commands on a fresh machine do everything (see README):
#   make demo   installs into .venv and reproduces the published BN findings (quick scale)
#   make test   installs into .venv and runs the test suite
# Everything runs inside .venv in this repository; nothing is installed system-wide.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast bench lint reproduce-list clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The main job: every finding of docs/design.md §7 at quick scale, offline on the bundled
# MNIST subset; report and figures in results/reference (the committed reference results).
demo: $(STAMP)
	$(BIN)/bnexp reproduce all scale=quick --out results/reference

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Unit tests only (no subprocess runs of the CLI): seconds.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python scripts/bench.py --fig1

lint: $(STAMP)
	$(BIN)/ruff check bnexp tests scripts

reproduce-list: $(STAMP)
	$(BIN)/bnexp reproduce --list

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
