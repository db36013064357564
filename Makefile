# Two entry points: `make run` (the main job) and `make test` (the test suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run quick test bench install lock clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip

$(STAMP): $(VENV)/bin/python pyproject.toml constraints.txt
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)  # extra options pass through: make run ARGS="--quick --workers 2"
	$(VENV)/bin/bayesnet run $(ARGS)

quick: $(STAMP)  # the smoke test: small grid, short chains (about 3 min on 2 cores)
	$(VENV)/bin/bayesnet run --quick $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	$(PY) bench/samplers.py --quick

lock:  # re-resolve the newest versions pyproject allows into constraints.txt, in a fresh venv
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet -e '.[test]'
	{ head -n 2 constraints.txt; .lock-venv/bin/pip freeze --exclude-editable | grep -v '^bayesnet'; } > constraints.new
	mv constraints.new constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .jax_cache
