# simflow — the two commands: `make run` (whole system, embedded default) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lock-check lint typecheck migrations-check test-sqlite test-postgres browser-deps pdf-deps bench renewal-storm bulk-activation crash-drill scale-drill clean

UV_VERSION := 0.13.9
UV := $(BIN)/uv
export UV_PROJECT_ENVIRONMENT := $(VENV)

# Installs exactly what uv.lock pins (hashes included); never resolves anew.
$(STAMP): pyproject.toml uv.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(UV) || $(BIN)/pip install --quiet uv==$(UV_VERSION)
	$(UV) lock --check
	$(UV) sync --frozen --extra dev --quiet
	touch $(STAMP)

# Fails when pyproject.toml and uv.lock disagree.
lock-check: $(STAMP)
	$(UV) lock --check

run: $(STAMP) pdf-deps
	$(BIN)/simflow dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy .

migrations-check: $(STAMP)
	rm -f var/migrations-check.db
	$(BIN)/alembic -x url=sqlite+aiosqlite:///var/migrations-check.db upgrade head
	$(BIN)/alembic -x url=sqlite+aiosqlite:///var/migrations-check.db check

# WeasyPrint renders invoice PDFs with Pango; it subsets their fonts with HarfBuzz when libharfbuzz-subset is
# there (about 15 ms a receipt) and with fontTools otherwise (about 240 ms). Installed when we can.
PDF_PACKAGES := libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core
pdf-deps:
	@ldconfig -p | grep -q libharfbuzz-subset.so.0 && ldconfig -p | grep -q libpangoft2-1.0.so.0 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(PDF_PACKAGES) >/dev/null; \
	  else echo "missing some of $(PDF_PACKAGES): invoice PDFs will be slow or fail"; fi; }

# Browser tests drive Debian's chromium; install it when we can (root, apt available).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: browser tests will be skipped"; fi; }

# The test run activates 200 SIMs in bulk; `make bulk-activation` measures 1,000 (var/bench/bulk_activation_1000.json).
# Each run keeps its temporary files under var/pytest: pytest's shared default keeps only the last three runs of
# the machine, so another pytest started meanwhile would delete this run's files (session databases, FTP roots).
test-sqlite: $(STAMP) pdf-deps browser-deps
	mkdir -p var/pytest
	SIMFLOW_BULK_SIMS=200 $(BIN)/pytest -q --basetemp=$(CURDIR)/var/pytest/sqlite

test-postgres: $(STAMP) pdf-deps
	@if [ -n "$$SIMFLOW_TEST_POSTGRES_URL" ]; then \
	  mkdir -p var/pytest && SIMFLOW_TEST_BACKEND=postgres SIMFLOW_BULK_SIMS=200 $(BIN)/pytest -q -m "not browser" --basetemp=$(CURDIR)/var/pytest/postgres; \
	else echo "SIMFLOW_TEST_POSTGRES_URL not set: PostgreSQL run skipped"; fi

test: lock-check lint typecheck migrations-check test-sqlite test-postgres

bench: $(STAMP) pdf-deps
	$(BIN)/simflow bench topup

# N subscriptions due at the same instant (SUBSCRIPTIONS=200 for a quick run); its last line is the summary.
SUBSCRIPTIONS ?= 10000
renewal-storm: $(STAMP) pdf-deps
	$(BIN)/simflow bench renewal-storm --subscriptions $(SUBSCRIPTIONS)

bulk-activation: $(STAMP) pdf-deps
	SIMFLOW_BULK_SIMS=1000 $(BIN)/pytest -q -s tests/e2e/test_bulk_operations.py -k measured

crash-drill: $(STAMP) pdf-deps
	$(BIN)/python -m bench.crash_drill

# 2 APIs and 2 workers on PostgreSQL (SIMFLOW_SCALE_DRILL_POSTGRES_URL, default the local server), one of each killed.
scale-drill: $(STAMP) pdf-deps
	$(BIN)/python -m bench.scale_drill

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
