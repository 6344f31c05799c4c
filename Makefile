# Two commands for a fresh machine: `make demo` and `make test`. Both bootstrap the virtualenv.
# `make test` runs `make lint` (ruff, mypy) first; PYTEST_ARGS picks tests, e.g. "tests/unit -x".
# One process at a time: `make topology`, `make simulator`, `make worker ADAPTER=advis` (CONFIG=...).
# `make stack`: compose.yaml's processes natively (hub stack), e.g. STACK_ARGS="--scrape-interval 1s".
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CONFIG ?= examples/demo.toml
ADAPTER ?=

.PHONY: demo test lint bootstrap topology worker simulator stack clean bench bench-quick bench-soak

$(STAMP): pyproject.toml
	@bash scripts/bootstrap.sh "$(PYTHON)" "$(VENV)"
	@touch $(STAMP)

bootstrap: $(STAMP)

demo: $(STAMP)
	$(PY) -m hub --config $(CONFIG) demo

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

test: lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

topology: $(STAMP)
	$(PY) -m hub --config $(CONFIG) topology apply

worker: $(STAMP)
	$(if $(ADAPTER),,$(error name the adapter: make worker ADAPTER=<name> (one of [adapters.<name>] in $(CONFIG))))
	$(PY) -m hub --config $(CONFIG) worker $(ADAPTER)

simulator: $(STAMP)
	$(PY) -m hub --config $(CONFIG) simulator

stack: $(STAMP)
	$(PY) -m hub stack --repo . $(STACK_ARGS)

# Benchmarks of issue 11 (bench/harness, docs/benchmarks.md): Markdown table on stdout, JSON + PNG in
# bench/results/. `make bench` ~6-10 min, `make bench-quick` a smoke run (~20 s), `make bench-soak`
# 50,000 x 20 KB through one worker (BENCH_SOAK_COUNT to change). Needs RabbitMQ + management API.
# BENCH_ARGS="--out-dir DIR"; BENCH_SIZES="5 KB,50 KB", BENCH_VARIANTS=..., BENCH_ROUNDS=5 pick a part.
BENCH_STAMP := $(VENV)/.bench-stamp

$(BENCH_STAMP): $(STAMP) pyproject.toml
	@$(PY) -m pip install -q -e '.[bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m bench.harness $(BENCH_ARGS)

bench-quick: $(BENCH_STAMP)
	$(PY) -m bench.harness --quick $(BENCH_ARGS)

bench-soak: $(BENCH_STAMP)
	$(PY) -m bench.harness --soak $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
