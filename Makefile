# The two set-up commands a new user runs: `make demo` and `make test`.
# Installs are pinned by constraints.txt (regenerate with `make constraints`), so a
# fresh clone gets the set CI was green with; `make test-latest` tries the newest releases.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_INSTALL = $(BIN)/python -m pip install -q -c constraints.txt

.PHONY: demo test test-subprocess lint lab bench fuzz soak clean constraints test-latest

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(PIP_INSTALL) -e ".[test,bench,dev]"
	$(BIN)/python -m notebook_actors._install --disable-pdb-hijack
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py
	$(BIN)/python examples/run_notebook.py

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# the core and reliability suites again with the subprocess spawn backend (the default
# is the fork server): both backends must behave the same
test-subprocess: $(STAMP)
	NOTEBOOK_ACTORS_START_METHOD=trio $(BIN)/python -m pytest -q $(PYTEST_ARGS) tests/core tests/reliability

# ruff (lint and format), mypy on the core ([tool.mypy]) and import-linter's
# contracts ([tool.importlinter] in pyproject.toml)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

lab: $(BIN)/python
	$(PIP_INSTALL) -e ".[notebook]" jupyterlab
	$(BIN)/jupyter lab examples/notebooks

bench: $(STAMP)
	$(BIN)/python -m bench
	$(BIN)/python -m bench.data

fuzz: $(STAMP)
	$(PIP_INSTALL) -e ".[fuzz]"
	mkdir -p .fuzz-corpus && cp -n fuzz/regressions/* .fuzz-corpus/
	$(BIN)/python fuzz/fuzz_codec.py -max_total_time=$${FUZZ_SECONDS:-300} -rss_limit_mb=2048 -artifact_prefix=fuzz/ .fuzz-corpus
	$(BIN)/python fuzz/fuzz_handshake.py -max_total_time=$${FUZZ_SECONDS:-300} -rss_limit_mb=2048 -artifact_prefix=fuzz/

# the randomized fault-injection test, run for SOAK_SECONDS (default 10 min) of rounds
soak: $(STAMP)
	NOTEBOOK_ACTORS_SOAK_SECONDS=$${SOAK_SECONDS:-600} $(BIN)/python -m pytest -q -s --timeout=$$(( $${SOAK_SECONDS:-600} + 300 )) tests/reliability/test_random_faults.py

# regenerate the pinned set from the newest releases (then run `make test` and commit it)
constraints:
	rm -rf .venv-constraints && $(PY) -m venv .venv-constraints
	.venv-constraints/bin/python -m pip install -q --upgrade pip
	.venv-constraints/bin/python -m pip install -q -e ".[test,bench,dev]"
	.venv-constraints/bin/python -m pip freeze --exclude-editable | grep -v '^-e ' > constraints.txt
	rm -rf .venv-constraints

# the suite against the newest releases, so that drift is seen before it reaches CI
test-latest:
	rm -rf .venv-latest && $(PY) -m venv .venv-latest
	.venv-latest/bin/python -m pip install -q --upgrade pip
	.venv-latest/bin/python -m pip install -q -e ".[test,bench,dev]"
	.venv-latest/bin/python -m notebook_actors._install --disable-pdb-hijack
	.venv-latest/bin/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .venv-latest .venv-constraints build *.egg-info
