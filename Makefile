# The two commands of the README: `make demo` and `make test`.
# Each creates (or reuses) a virtualenv, installs the project into it, then runs.
# Reuse an existing environment with `make test VENV=/path/to/venv` or SHEAR_VENV=/path.

PYTHON ?= python3
VENV ?= $(or $(SHEAR_VENV),.venv)
BIN := $(VENV)/bin
CONSTRAINTS := requirements/constraints.txt
# Re-install whenever setup.py or the constraints change.
STAMP := $(VENV)/.shear-installed-$(shell cat setup.py $(CONSTRAINTS) | $(PYTHON) -c "import hashlib,sys;print(hashlib.md5(sys.stdin.buffer.read()).hexdigest()[:10])")
PYTEST_ARGS ?=

.PHONY: demo test test-slow install

install: $(STAMP)

$(STAMP): setup.py $(CONSTRAINTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar off -c $(CONSTRAINTS) -e '.[test,eval]'
	@rm -f $(VENV)/.shear-installed-*
	@touch $@

demo: $(STAMP)
	$(BIN)/shear demo

test: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest -m "not slow and not gpu" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m "slow" $(PYTEST_ARGS)
