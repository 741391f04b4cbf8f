# Zeitplan: `make demo` and `make test` each do the whole set-up on a fresh Debian 12 machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := zookeeper postgresql rabbitmq-server
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: help setup packages venv demo test test-unit test-integration faults lint bench bench-full clean

help:
	@echo "make demo   - install what is missing, start the local cluster with demo jobs (Ctrl-C stops)"
	@echo "make test   - install what is missing, run lint, type checks and the test suite"
	@echo "make faults - only the kill-and-partition scenarios (each on its own cluster)"
	@echo "make soak   - the fault scenarios with every phase four times longer"
	@echo "make bench  - run the benchmarks (about 10 minutes) and update bench/RESULTS.md"
	@echo "make bench-full - the same at the issue's sizes (about 30 minutes)"

setup: packages venv

# Debian packages, installed only when missing (a second run installs nothing).
packages:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	else echo "Debian packages present: $(APT_PACKAGES)"; fi

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

demo: setup
	$(VENV)/bin/schedctl dev up

lint: venv
	$(VENV)/bin/ruff check common schedulerd workerd schedctl tests bench
	$(VENV)/bin/mypy

# The whole suite: unit, integration and the fault scenarios (about 25 minutes here);
# the 30 slowest tests are listed at the end.
test: setup lint
	$(PY) -m pytest --durations=30 $(PYTEST_ARGS)

faults: setup
	$(PY) -m pytest tests/faults -p no:schemathesis -q -s $(PYTEST_ARGS)

test-unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: setup
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

# The `bench` extra (Celery for the peer comparison, py-spy), installed when missing.
bench: setup
	@{ $(PY) -c 'import celery' && [ -x $(VENV)/bin/py-spy ]; } 2>/dev/null || \
	  $(PY) -m pip install -q --disable-pip-version-check -e '.[test,bench]'
	$(PY) -m bench.run

bench-full: setup
	@{ $(PY) -c 'import celery' && [ -x $(VENV)/bin/py-spy ]; } 2>/dev/null || \
	  $(PY) -m pip install -q --disable-pip-version-check -e '.[test,bench]'
	$(PY) -m bench.run --full

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .ruff_cache .hypothesis

# The fault scenarios with a workload four times longer (ZEITPLAN_SOAK=1 scales every phase).
.PHONY: soak
soak: setup
	ZEITPLAN_SOAK=1 $(PY) -m pytest tests/faults -p no:schemathesis -q -s $(PYTEST_ARGS)
