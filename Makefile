# Two commands on a fresh Debian machine:
#   make repro   set up (.venv, project, Fashion-MNIST) and run the whole DVC pipeline (through the grid flow)
#   make test    set up and run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# .venv is 6.3 GB: torch 2.14.1's CUDA build brings 3.2 GB of nvidia-* wheels and 0.9 GB of triton
MIN_FREE_GB ?= 7
FMNIST_DIR ?= $(or $(FASHION_MNIST_DIR),/usr/share/datasets/fashion-mnist)
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup repro test test-fast dataset clean-venv

setup: $(STAMP) dataset

$(STAMP): pyproject.toml
	@free_gb=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); \
	if [ "$$free_gb" -lt "$(MIN_FREE_GB)" ]; then \
	  echo "Not enough disk space to install: $(VENV) needs about $(MIN_FREE_GB) GB, and the disk holding $(CURDIR) has $$free_gb GB free."; \
	  echo "Free some space (old clones, ~/.cache/pip) and run make again; MIN_FREE_GB=0 skips this check."; \
	  exit 1; \
	fi
	@echo "== creating $(VENV) and installing the project (torch 2.14.1, dvc, prefect, clean-fid, lpips, ...)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

dataset:
	@if [ -f "$(FMNIST_DIR)/t10k-labels-idx1-ubyte.gz" ] || [ -f "$(FMNIST_DIR)/t10k-labels-idx1-ubyte" ]; then \
	  echo "== Fashion-MNIST found in $(FMNIST_DIR)"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "== installing Debian's dataset-fashion-mnist"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else \
	  echo "Fashion-MNIST is missing. Install it with:"; \
	  echo "  sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist"; \
	  echo "or set FASHION_MNIST_DIR to a folder with the four original *-idx?-ubyte.gz files."; \
	  exit 1; \
	fi

repro: setup
	@[ -d .dvc ] || { echo "no .dvc folder: run from a clone of the repository"; exit 1; }
	@# the stages of dvc.yaml through the grid flow: orchestration.cpu_slots at once, one
	@# `dvc commit` at the end; `dvc status` must then be clean (`dvc repro` re-runs the same stages)
	$(BIN)/python -m pipeline grid
	@$(BIN)/dvc status --quiet || { echo "dvc status is not clean after the grid:"; $(BIN)/dvc status; exit 1; }
	@echo "== done: metrics/table.md, metrics/results.parquet, evals/<dataset>/<model>/seed<k>/*.png"

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

clean-venv:
	rm -rf $(VENV)
