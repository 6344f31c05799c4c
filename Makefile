# Two commands for a fresh machine: `make demo` and `make test`. Both bootstrap the virtualenv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CONFIG ?= examples/demo.toml

.PHONY: demo test bootstrap topology worker simulator clean

$(STAMP): pyproject.toml
	@bash scripts/bootstrap.sh "$(PYTHON)" "$(VENV)"
	@touch $(STAMP)

bootstrap: $(STAMP)

demo: $(STAMP)
	$(PY) -m hub --config $(CONFIG) demo

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

topology: $(STAMP)
	$(PY) -m hub --config $(CONFIG) topology apply

clean:
	rm -rf $(VENV) var .pytest_cache
