# Every target installs what it needs: uv (from PyPI, with the machine's Python), a virtual
# environment, and the hashed lock. `make help` lists the targets. Bytecode is compiled at
# install: where PYTHONDONTWRITEBYTECODE is set (this machine), every process, each test's
# subprocess too, otherwise compiles the libraries again (`import app.main`: 8.7 s, 3.7 s).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(PYTHON) -m uv
export UV_PYTHON_DOWNLOADS := never
export UV_NO_CONFIG := 1

$(BIN)/.synced: requirements-dev.lock pyproject.toml
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	@test -x $(BIN)/python || $(UV) venv --quiet --python $(PYTHON) $(VENV)
	$(UV) pip sync --quiet --compile-bytecode --python $(BIN)/python requirements-dev.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

.PHONY: help install run test soak lint fmt migrate lock bench bench-http bench-search bench-llm

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

install: $(BIN)/.synced ## create .venv and install the locked dependencies

run: $(BIN)/.synced ## serve the API (SQLite under data/, migrations applied) on 127.0.0.1:8000
	$(BIN)/helpdesk serve

# One worker per core (pytest-xdist); TEST_WORKERS=0 runs the suite in this process.
TEST_WORKERS ?= auto
test: $(BIN)/.synced ## run the whole test suite (PostgreSQL too when HELPDESK_TEST_DATABASE_URL is set)
	$(BIN)/pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

soak: $(BIN)/.synced ## the reliability suite (tests/reliability) at soak scale: 10x the load, longer faults
	HELPDESK_SOAK=1 $(BIN)/pytest tests/reliability $(PYTEST_ARGS)

lint: $(BIN)/.synced ## ruff (lint + format check) and mypy (strict on app/)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(BIN)/.synced ## format and auto-fix with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

migrate: $(BIN)/.synced ## apply database migrations and exit
	$(BIN)/helpdesk migrate

lock: ## regenerate the hashed lock files from pyproject.toml
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) pip compile pyproject.toml --python-version 3.11 --generate-hashes --quiet -o requirements.lock
	$(UV) pip compile pyproject.toml --extra dev -c requirements.lock --python-version 3.11 --generate-hashes --quiet -o requirements-dev.lock

bench: $(BIN)/.synced ## print the benchmarks (figures and ratios against references in the same run)
	$(BIN)/python -m bench.onebot
	$(BIN)/python -m bench.http $(HTTP_ARGS)

# PostgreSQL: the database bench_http on 127.0.0.1:5432 (user postgres) is created and dropped.
HTTP_ARGS ?= --db sqlite postgresql
bench-http: $(BIN)/.synced ## HTTP throughput of detail, list, search and create beside the bare and limit references
	$(BIN)/python -m bench.http $(HTTP_ARGS)

# PostgreSQL: the database bench_search on 127.0.0.1:5432 (user postgres) is created and dropped.
SEARCH_ARGS ?= --tickets 10000 1000000 --db sqlite postgresql
bench-search: $(BIN)/.synced ## search latency on generated tickets (minutes at 1M; narrow with SEARCH_ARGS=...)
	$(BIN)/python -m bench.search $(SEARCH_ARGS)

LLM_ARGS ?= --iterations 300
bench-llm: $(BIN)/.synced ## time to first token of reply drafts: ours vs the fake provider direct (SQLite)
	$(BIN)/python -m bench.llm_stream $(LLM_ARGS)
