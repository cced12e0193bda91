# silverline — two commands: `make demo` and `make test`.
# Each creates or reuses the virtualenv in $(VENV) and installs what is missing.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.silverline-installed
PYTEST_ARGS ?=
# Test processes (pytest-xdist): two on a 2-core machine keep both cores busy while one
# test waits on a subprocess or a queue; 0 runs every test in the pytest process itself.
# Which worker runs what: pytest_xdist_make_scheduler in tests/conftest.py.
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL := -n $(PYTEST_WORKERS)
DEMO_ARGS ?=
BENCH_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install java chromium emr-archive-local demo test lint typecheck pytest unit spark integration format clean bench

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): requirements.txt setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

install: $(STAMP) java  ## create/refresh the virtualenv with the pinned requirements

java:  ## make sure a Java 17 runtime is there (Debian/Ubuntu: installs it when run as root)
	@if ! command -v java >/dev/null 2>&1 && [ -z "$$JAVA_HOME" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing openjdk-17-jre-headless"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless; \
	  else \
	    echo "Java 17 is required (Spark 3.5): install openjdk-17-jre-headless or set JAVA_HOME" >&2; exit 1; \
	  fi; \
	fi

chromium:  ## make sure headless Chromium is there for the Data Docs browser test (Debian: installs it as root)
	@if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "Chromium is required by the browser test: install Debian's chromium package" >&2; exit 1; \
	  fi; \
	fi

demo: install  ## the whole platform on one machine: simulated tenants -> SQS (moto) -> silver, verified
	$(BIN)/silverline demo --config conf/local.yaml $(DEMO_ARGS)

test: install chromium lint typecheck pytest  ## lint, type-check and run every test tier

lint: $(STAMP)  ## ruff lint + format check
	$(BIN)/ruff check jobs tests bench
	$(BIN)/ruff format --check jobs tests bench

typecheck: $(STAMP)  ## mypy (strict) on the package
	$(BIN)/mypy

pytest: $(STAMP)  ## all test tiers (pytest exit code 5, "no tests collected", is reported, not fatal)
	@$(BIN)/python -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests were collected"; exit 0; fi; exit $$rc

emr-archive-local: $(STAMP)  ## build silverline-venv.tar.gz on this machine's Python 3.11 into dist/emr-local (for testing)
	bash emr/packaging/build-archive.sh --local --out dist/emr-local

bench: install  ## the benchmark suite (about 30 minutes), then bench/results/README.md
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

unit: $(STAMP)  ## fast tests only
	$(BIN)/python -m pytest -m unit $(PYTEST_ARGS)

spark: $(STAMP)  ## Spark tests only
	$(BIN)/python -m pytest -m spark $(PYTEST_PARALLEL) $(PYTEST_ARGS)

integration: $(STAMP) chromium  ## moto + Spark + Iceberg end to end
	$(BIN)/python -m pytest -m integration $(PYTEST_PARALLEL) $(PYTEST_ARGS)

format: $(STAMP)  ## apply ruff's formatter and safe fixes
	$(BIN)/ruff check --fix jobs tests bench
	$(BIN)/ruff format jobs tests bench

clean:  ## remove the virtualenv, caches and the local lake
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache lake build *.egg-info
