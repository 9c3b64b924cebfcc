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

.PHONY: demo test test-slow install device-smoke

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

# The GPU device check (benchmarks/device/README.md) as a CPU smoke in a device-like venv:
# CPython 3.12 + torch 2.11 + transformers 5.x, the project's wheels installed with pip --target.
DEVVENV ?= /work/devvenv
DEVICE_PYTHON ?= $(or $(wildcard /root/.pyenv/versions/3.12.1/bin/python3.12),python3.12)
DEVCHECK_OUT ?= /tmp/devcheck
device-smoke:
	@test -x $(DEVVENV)/bin/python || ($(DEVICE_PYTHON) -m venv $(DEVVENV) && $(DEVVENV)/bin/python -m pip install --progress-bar off \
		'torch==2.11.*' 'transformers>=5,<6' accelerate safetensors tokenizers pytest)
	PYTHON=$(DEVVENV)/bin/python bash benchmarks/device/fetch_wheels.sh
	rm -rf $(DEVCHECK_OUT)/site
	DEVICE_SITE=$(DEVCHECK_OUT)/site PATH=$(DEVVENV)/bin:$$PATH bash benchmarks/device/check.sh --smoke --out $(DEVCHECK_OUT)
