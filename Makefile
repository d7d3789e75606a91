# recdag: `make run` sets up a fresh machine and materializes the default pipeline; `make test` tests it.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export RECDAG_DATA_DIR ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export GX_ANALYTICS_ENABLED := false
export TQDM_DISABLE := 1

.PHONY: venv run test test-all ui bench clean

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.installed

$(DAGSTER_HOME)/dagster.yaml: orchestration/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp orchestration/dagster.yaml $@

run: venv $(DAGSTER_HOME)/dagster.yaml
	$(PY) -m orchestration.run

test: venv
	$(PY) -m pytest -q tests

test-all: venv
	$(PY) -m pytest -q tests -m ''

ui: venv $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

bench: venv
	$(PY) bench/run_all.py

clean:
	rm -rf $(RECDAG_DATA_DIR) $(DAGSTER_HOME)
