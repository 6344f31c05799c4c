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

.PHONY: demo test lint bootstrap topology worker simulator stack clean

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

clean:
	rm -rf $(VENV) var .pytest_cache
