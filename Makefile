# Two commands on a fresh machine do everything (see README):
#   make demo   installs into .venv and reproduces the published BN findings (quick scale)
#   make test   installs into .venv and runs the test suite
# Everything runs inside .venv in this repository; nothing is installed system-wide.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install data demo test test-fast bench gpu-check lint reproduce-list clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Fashion-MNIST offline (data=fashion_mnist): the Debian package puts the four .gz files in
# $(FASHION_DIR); bnexp unpacks them into data.root on first use. Needs apt-get and root;
# otherwise it prints the command to run. Fails (exit 1) when the files are still missing.
FASHION_PACKAGE := dataset-fashion-mnist
FASHION_DIR     := /usr/share/datasets/fashion-mnist
data:
	@if [ -f $(FASHION_DIR)/train-images-idx3-ubyte.gz ]; then \
	  echo "make data: Fashion-MNIST is installed in $(FASHION_DIR)"; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "make data: no apt-get here. Download the four files from" \
	    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ into" \
	    "~/.cache/bnexp/data/FashionMNIST/raw/ (or data.root/FashionMNIST/raw/)."; exit 1; \
	elif [ "$$(id -u)" != 0 ]; then \
	  echo "make data: installing needs root. Run: sudo apt-get install $(FASHION_PACKAGE)"; exit 1; \
	else \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(FASHION_PACKAGE) \
	  || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(FASHION_PACKAGE); }; \
	fi

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

# CUDA against CPU (scripts/gpu_check.py): the headline MLP and the CNN on both, their CSVs
# compared within a stated tolerance, steps/s of each, one JSON line; < 5 min on a GPU machine.
# Without CUDA it says so and exits 0. Not tied to .venv: a GPU machine's own python3 (with
# torch) runs it when there is no .venv, bnexp and its other dependencies importable.
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
gpu-check:
	$(GPU_PYTHON) scripts/gpu_check.py

# Lint and the formatter's check: a file ruff format would change fails, like a lint error.
lint: $(STAMP)
	$(BIN)/ruff check bnexp tests scripts
	$(BIN)/ruff format --check bnexp tests scripts

reproduce-list: $(STAMP)
	$(BIN)/bnexp reproduce --list

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
