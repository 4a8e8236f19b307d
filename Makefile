# AI Core — the two commands: `make run` and `make test` (plus `make bench`, `make lint`).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8000
PG_URL ?= postgres://postgres@127.0.0.1:5432/postgres
REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: run test test-sqlite test-postgres test-postgres-if-up bench bench-crash lint architecture worker venv venv-test migrate demo clean browser

# Two stamps: `make run` installs the runtime dependencies only; `make test` / `make lint` add the test and
# tool extras (pytest, schemathesis, playwright, ruff…) on top, once.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# The console's browser assets (Chart.js; axe-core for the tests) come from the npm registry into node_modules/
# (gitignored) and are served as static files: no CDN. Debian's npm is installed when missing and we are root.
NPM_CI = command -v npm >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	{ apt-get install -y -q npm >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q npm >/dev/null 2>&1; }; }; } || \
	{ echo "npm is needed for the console's chart assets: install Node.js and npm" >&2; exit 1; }; \
	npm ci --no-audit --no-fund --loglevel=error

# Stamps inside node_modules/: deleting it installs again. The test install (all packages) also satisfies run's.
NPM_RUNTIME := node_modules/.aicore-runtime
NPM_TEST    := node_modules/.aicore-test

$(NPM_RUNTIME): package.json package-lock.json
	$(NPM_CI) --omit=dev
	touch $@

$(NPM_TEST): package.json package-lock.json
	$(NPM_CI)
	touch $(NPM_RUNTIME) $@

venv: $(VENV)/.installed $(NPM_RUNTIME)

venv-test: $(VENV)/.installed-test $(NPM_TEST)

migrate: venv
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py aicore_demo

## API + dashboard on 127.0.0.1:$(PORT) and a supervised worker; one process migrates, loads the demo data and
## serves. Ctrl-C stops both.
run: venv
	$(PY) manage.py aicore_run --setup --port $(PORT)

## A worker only (for scale-out: point it at the shared DATABASE_URL and CELERY_BROKER_URL).
worker: venv
	$(PY) -m celery -A config worker -l info

## Debian's Chromium for the dashboard's browser test (installed when we are root; else that test is skipped).
browser:
	@if ! command -v chromium >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium for the browser test"; \
		apt-get install -y -q chromium >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } || \
		echo "chromium could not be installed: the browser test will be skipped"; \
	fi

## The whole suite on SQLite + embedded broker, then again on PostgreSQL + Redis where they answer. Where they do
## not, the last lines printed say plainly that the PostgreSQL pass did not run; AICORE_REQUIRE_POSTGRES=1 (CI:
## .ci/run) makes that a failure instead.
test: venv-test browser
	$(MAKE) --no-print-directory test-sqlite
	@$(MAKE) --no-print-directory test-postgres-if-up

## The second half of `make test`: the PostgreSQL pass if PG_URL and REDIS_URL answer, else the closing notice.
test-postgres-if-up: venv-test
	@if why=$$($(PY) -m scripts.services_up --why "$(PG_URL)" "$(REDIS_URL)"); then \
		$(MAKE) --no-print-directory test-postgres; \
	elif [ -n "$$AICORE_REQUIRE_POSTGRES" ]; then \
		echo "FAILED: the PostgreSQL + Redis pass is required (AICORE_REQUIRE_POSTGRES) but $$why." >&2; exit 1; \
	else \
		echo; \
		echo "=================================================================================================="; \
		echo "THE POSTGRESQL + REDIS PASS DID NOT RUN: $$why."; \
		echo "Only the SQLite pass ran; the tests marked postgres were skipped. Start PostgreSQL and Redis (see"; \
		echo "CONTRIBUTING.md, \"What make test needs\") and run make test-postgres, or set PG_URL / REDIS_URL."; \
		echo "=================================================================================================="; \
	fi

test-sqlite: venv-test
	env -u DATABASE_URL -u CELERY_BROKER_URL $(PY) -m pytest -q $(PYTEST_ARGS)

test-postgres: venv-test
	DATABASE_URL=$(PG_URL) CELERY_BROKER_URL=$(REDIS_URL) $(PY) -m pytest -q $(PYTEST_ARGS)

## Benchmarks (PostgreSQL + Redis; the API one drives gunicorn with wrk, a C load generator, installed here
## with apt when missing and root): see bench/run.py. Not part of `make test`.
$(VENV)/.installed-bench: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[bench]'
	touch $@

bench: venv $(VENV)/.installed-bench
	@command -v wrk >/dev/null || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get install -y -q wrk >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; }; \
	else echo "wrk not found: install it (e.g. apt-get install wrk) for bench.api" >&2; fi; }
	$(PY) -m bench.run

## kill -9 of a worker with 2 000 calls in flight (asyncio executor): 0 lost, 0 duplicated, 0 double-charged.
bench-crash: venv $(VENV)/.installed-bench
	$(PY) -m bench.engine_crash

lint: venv-test architecture
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

## The layer contract (.importlinter, import-linter from PyPI): apps import only the apps below them.
architecture: venv-test
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf var test-artifacts
