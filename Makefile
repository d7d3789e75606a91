# recdag: `make run` sets up a fresh machine and materializes the default pipeline; `make test` tests it.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
export RECDAG_DATA_DIR ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export GX_ANALYTICS_ENABLED := false
export TQDM_DISABLE := 1

.PHONY: venv venv-test venv-spark java run backtest test lint format lock browser recommend report replay ui bench clean

# Runtime dependencies only (hash-checked); the test tools come on top in $(VENV)/.test.
$(VENV)/.runtime: requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "[recdag] $(PYTHON) not found: install Python 3.11 or pass PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) --require-hashes -r requirements.lock
	$(PIP) --no-deps -e .
	rm -f $(VENV)/.test $(VENV)/.spark
	touch $@

$(VENV)/.test: $(VENV)/.runtime requirements-test.lock
	$(PIP) --require-hashes -r requirements-test.lock
	touch $@

# The Spark engine's extra (pyspark, dagster-pyspark, sqlglot); the test lock includes it.
$(VENV)/.spark: $(VENV)/.runtime requirements-spark.lock
	$(PIP) --require-hashes -r requirements-spark.lock
	touch $@

venv: $(VENV)/.runtime
venv-test: $(VENV)/.test
venv-spark: $(VENV)/.spark

# A Java 17+ runtime for Spark (tools/ensure_java.sh installs Debian's when it may).
java:
	@tools/ensure_java.sh

# RECDAG_ENGINE=spark also needs the Spark extra and Java.
ENGINE_DEPS := $(if $(filter spark,$(RECDAG_ENGINE)),venv-spark java)

$(DAGSTER_HOME)/dagster.yaml: orchestration/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp orchestration/dagster.yaml $@

run: venv $(ENGINE_DEPS) $(DAGSTER_HOME)/dagster.yaml
	$(PY) -m orchestration.run

# Rolling-origin backtest: ingest, then train and evaluate the newest N cut-offs (one run each), pool them.
N ?= 4
backtest: venv $(ENGINE_DEPS) $(DAGSTER_HOME)/dagster.yaml
	$(PY) -m orchestration.run --backtest $(N)

# Everything the tests need is set up here: the browser (tools/ensure_chromium.sh) and Java for the Spark engine.
# The suite runs in TEST_WORKERS processes (pytest-xdist), a whole test file per process so that a module's
# fixtures are built once; TEST_WORKERS=0 runs it in this process. Files are handed out in the collection's
# order, the longest (pytest.mark.heavy, tests/conftest.py) first: xdist's default reorder by test count
# (--no-loadscope-reorder turns it off) had started 7-minute modules last.
TEST_WORKERS ?= 2
test: venv-test browser java lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests

test-all: venv-test browser java
	$(PY) -m pytest -q tests -m ''

browser:
	@tools/ensure_chromium.sh

lint: venv-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv-test
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Re-resolve requirements.lock / requirements-test.lock from pyproject.toml (needs PyPI).
lock: venv-test
	UV=$(VENV)/bin/uv requirements/compile.sh

# One user's history and recommendations as a person reads them: make recommend USER=<id> [K=10]
K ?= 10
recommend: venv
	$(PY) -m orchestration.recommend --user "$(USER)" --k $(K)

# The self-contained HTML report of the latest evaluation: $(RECDAG_DATA_DIR)/exports/report.html
report: venv
	$(PY) -m orchestration.report

# Live mode: play a bundled dataset into a landing folder, one day-file every PACE seconds (docs/operations.md).
DATASET ?= movielens-100k
LANDING ?= $(RECDAG_DATA_DIR)/landing
PACE ?= 10
replay: venv
	$(PY) -m orchestration.replay --dataset "$(DATASET)" --to "$(LANDING)" --interval-s $(PACE) $(if $(DAYS),--days $(DAYS))

# dagster dev through orchestration/ui.py, so SIGTERM and Ctrl-C stop it even when started in the background;
# exec: make's child is dagster dev itself, which gets the SIGTERM make passes on (a shell in between would not).
ui: venv $(DAGSTER_HOME)/dagster.yaml
	exec $(PY) -m orchestration.ui -w workspace.yaml -h 127.0.0.1 -p 3000

bench: venv-test
	$(PY) bench/run_all.py

clean:
	rm -rf $(RECDAG_DATA_DIR) $(DAGSTER_HOME)
