# The two set-up commands a new user runs: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lab bench fuzz soak clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[test,bench]"
	$(BIN)/python -m notebook_actors._debug --disable-pdb-hijack
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py
	$(BIN)/python examples/run_notebook.py

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lab: $(STAMP)
	$(BIN)/pip install -q jupyterlab
	$(BIN)/jupyter lab examples/notebooks

bench: $(STAMP)
	$(BIN)/python -m bench

fuzz: $(STAMP)
	$(BIN)/pip install -q -e ".[fuzz]"
	mkdir -p .fuzz-corpus && cp -n fuzz/regressions/* .fuzz-corpus/
	$(BIN)/python fuzz/fuzz_codec.py -max_total_time=$${FUZZ_SECONDS:-300} -rss_limit_mb=2048 -artifact_prefix=fuzz/ .fuzz-corpus

# the randomized fault-injection test, run for SOAK_SECONDS (default 10 min) of rounds
soak: $(STAMP)
	NOTEBOOK_ACTORS_SOAK_SECONDS=$${SOAK_SECONDS:-600} $(BIN)/python -m pytest -q -s --timeout=$$(( $${SOAK_SECONDS:-600} + 300 )) tests/reliability/test_random_faults.py

clean:
	rm -rf $(VENV) build *.egg-info
