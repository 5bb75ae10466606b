# Two commands for a fresh machine (see README):
#   make demo   creates .venv, installs the suite and runs the offline quickstart pipeline
#   make test   creates .venv, installs the suite with dev extras and runs the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow lint format bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) experiments/run.py

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(PY) -m ruff check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: $(STAMP)
	$(PY) benchmarks/data_pipeline.py
	$(PY) benchmarks/loop_overhead.py
	$(PY) benchmarks/batched_individual.py
	$(PY) benchmarks/gradient_stats_overhead.py

clean:
	rm -rf $(VENV) outputs multirun
