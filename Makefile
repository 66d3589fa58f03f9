# Two commands on a fresh machine with only Python 3.11: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= $(CURDIR)/build/demo
PYTEST_ARGS ?=
# Three workers on two cores (much of the suite waits); each xdist group of the tests marked
# docker or workflows runs on one of them (tests/conftest.py).
XDIST ?= -n 3 --dist loadgroup
# JUnit XML of the last `make test` (junit.xml) and `make test-fast` (junit-fast.xml): seconds per
# test, summed per module by benchmarks/suite_modules.py.
RESULTS ?= build/test-results
# Our own package is installed editable (its source is imported): compile it too, for the same
# reason as --compile-bytecode below. A stale .pyc is never used (Python checks the source's time).
COMPILE := $(BIN)/python -m compileall -q -j 0 pipelines/src

.PHONY: venv demo lint test test-fast test-workflows bench bench-batch bench-serve clean

# The venv's packages are installed by uv (itself a wheel from PyPI, into the venv): it resolves
# and installs in seconds where pip took minutes (benchmarks/demo_phases.py). --compile-bytecode:
# with PYTHONDONTWRITEBYTECODE set (as on CI machines) no process would ever write a .pyc, and
# every `sail` process would compile mlflow, scikit-learn and pandas from source again (7.5 CPU s
# per import of the three instead of 2.7; benchmarks/import_cost.py). The stamps say which
# extras are in.
UV := $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv>=0.5,<1"

$(VENV)/.installed-all: pipelines/pyproject.toml | $(BIN)/uv
	$(UV) -e "pipelines[pipeline,test]"
	touch $@

venv: $(VENV)/.installed-all

# The demo needs the pipeline, not the test tools: only the pipeline extra and cookiecutter.
$(VENV)/.installed-demo: pipelines/pyproject.toml | $(BIN)/uv
	$(UV) -e "pipelines[pipeline]" "cookiecutter>=2.6"
	touch $@

# Generate a project with the default answers and run its whole pipeline on embedded defaults
# (SQLite MLflow, local-folder DVC remote, the public development signing key).
demo: $(VENV)/.installed-demo
	$(COMPILE)
	rm -rf "$(DEMO_DIR)"
	$(BIN)/cookiecutter --no-input --output-dir "$(DEMO_DIR)" cookiecutter-sail
	cd "$(DEMO_DIR)/sail-model" && PATH="$(abspath $(BIN)):$$PATH" SAIL_ALLOW_DEV_KEY=1 sail run
	cd "$(DEMO_DIR)/sail-model" && PATH="$(abspath $(BIN)):$$PATH" SAIL_ALLOW_DEV_KEY=1 \
	  sail predict --input data/split/test.csv --output reports/batch_predictions.csv
	@echo "demo project: $(DEMO_DIR)/sail-model  (serve it: cd there && SAIL_ALLOW_DEV_KEY=1 sail serve)"

# The lint, format and type gates (ruff.toml; [tool.mypy] in pipelines/pyproject.toml). --config:
# ruff would otherwise also read the template's pyproject.toml, which is Jinja, not TOML.
lint: venv
	$(BIN)/ruff check --config ruff.toml .
	$(BIN)/ruff format --config ruff.toml --check .
	cd pipelines && $(abspath $(BIN))/mypy

# The container, Jenkins and workflow tests need Docker, a base image, a local registry, groovy and
# shellcheck: docker/prepare-machine sets them up (idempotent). Only under CI is a failure fatal;
# elsewhere those tests skip. CI is CI set to anything but "", 0 or false (tests/ci_rules.py).
test: venv lint
	docker/prepare-machine || case "$$(printf %s "$${CI:-}" | tr A-Z a-z)" in ""|0|false) ;; *) exit 1 ;; esac
	$(COMPILE)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest $(XDIST) --durations=15 \
	  --junitxml=$(RESULTS)/junit.xml $(PYTEST_ARGS)

# The edit-test loop: no Docker, no workflow runs, nothing slow (pytest.ini's markers).
test-fast: venv
	$(COMPILE)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest $(XDIST) --durations=15 \
	  -m "not docker and not slow and not workflows" --junitxml=$(RESULTS)/junit-fast.xml \
	  $(PYTEST_ARGS)

# Only the generated workflows run through act (tests/test_workflow_runs.py; `make test` runs them
# too): pull requests, main to staging, the promotion, on this host's Docker and local registry.
test-workflows: venv
	docker/prepare-machine || case "$$(printf %s "$${CI:-}" | tr A-Z a-z)" in ""|0|false) ;; *) exit 1 ;; esac
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest tests/test_workflow_runs.py $(PYTEST_ARGS)

# Container figures (image sizes, cold start, rebuild, parallel training), printed for the README.
bench: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/containers.py

# Batch scoring of a 1,000,000-row file: rows/s and peak memory, CSV and Parquet.
bench-batch: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/batch.py

# Serving figures: mlflow models serve vs sail serve on the same registered model (wrk, interleaved
# rounds), then the inference image. Needs wrk (apt-get install wrk) and Docker.
# DATASET: example (default), penguins, economics, weather, diamonds or customers;
# ARGS: more options, e.g. ARGS="--fallback --no-image --rounds 1 --seconds 5".
DATASET ?= example
bench-serve: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/serve.py --dataset $(DATASET) $(ARGS)

clean:
	rm -rf "$(VENV)" build .pytest_cache
