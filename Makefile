# Two commands: `make run` starts the whole stack, `make test` runs the tests.
# Each target creates or updates its own virtual environment first.

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' && { command -v $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test test-fast bench venv clean-data

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "make: Python >= 3.11 is required"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[control,agent,dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/inventiv up

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

# Pure tests only (no servers): seconds.
test-fast: $(STAMP)
	$(PY) -m pytest -q tests/unit

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean-data:
	rm -rf .inventiv
