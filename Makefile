# testbed: the two commands are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test install lint bench bench-quick clean migrate seeds

$(STAMP): pyproject.toml package.json
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "testbed needs Python 3.11 or newer")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@# The portal's front-end packages (htmx) come from the npm registry and are served locally.
	if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund --loglevel=error; \
	  else echo "!!! npm not found: the portal works without htmx (plain forms); install Node.js for live validation"; fi
	touch $(STAMP)

install: $(STAMP)

## make run: embedded SQLite + a real Celery worker and beat on a filesystem broker + the web server.
run: $(STAMP)
	$(PY) -m testbed.devserver

## make test: the whole suite against PostgreSQL (DATABASE_URL) and Redis (REDIS_URL).
test: $(STAMP)
	@sh tests/e2e/ensure_browser.sh
	@sh tests/integrations/slurm/ensure_slurm.sh
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy testbed equipment booking seeds portal integrations
	$(PY) manage.py makemigrations --check --dry-run

bench: $(STAMP)
	$(PY) -m bench.run

## make bench-quick: the benchmarks' smoke modes only (docs/benchmarks.md left alone).
bench-quick: $(STAMP)
	$(PY) -m bench.run --quick

clean:
	rm -rf $(VENV) var .pytest_cache
