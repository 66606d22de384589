# Developer entry points. `make demo` and `make test` do all set-up on a fresh machine.
# VENV=path selects another virtual environment (CI uses fresh ones); EXTRAS (default dev) and
# DJANGO (a requirement such as 'Django>=5.2,<6') choose what `make venv` installs into it.

VENV ?= .venv
EXTRAS ?= dev
DJANGO ?=
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.rexecutor-installed
MANAGE := $(PYTHON) testproject/manage.py
PYTEST_ARGS ?=
PG_HOST ?= 127.0.0.1
PG_PORT ?= 5432
PG_DB ?= rexecutor
PG_URL ?= postgres://postgres@$(PG_HOST):$(PG_PORT)/$(PG_DB)
MYSQL_HOST ?= 127.0.0.1
MYSQL_PORT ?= 3306
MYSQL_DB ?= rexecutor
MYSQL_URL ?= mysql://root@$(MYSQL_HOST):$(MYSQL_PORT)/$(MYSQL_DB)

# SQLite runs must not pick up a DATABASE_URL from the caller's shell.
SQLITE_ENV := env -u DATABASE_URL
POSTGRES_ENV := env DATABASE_URL=$(PG_URL)
MYSQL_ENV := env DATABASE_URL=$(MYSQL_URL)

.DEFAULT_GOAL := help
.PHONY: help venv demo test test-sqlite test-postgres test-mariadb postgres mariadb lint migrations-check bench chaos chaos-full clean

help:
	@echo "make demo              migrate the SQLite test project and run the demo"
	@echo "make test              run the test suite on SQLite, then PostgreSQL, then MariaDB"
	@echo "make test-sqlite       ... on SQLite only"
	@echo "make test-postgres     ... on PostgreSQL only (started if it is not running)"
	@echo "make test-mariadb      ... on MariaDB only (started if it is not running)"
	@echo "make lint              ruff check, ruff format --check, mypy"
	@echo "make migrations-check  fail if a model change has no migration"
	@echo "make bench             run the benchmark against PostgreSQL (and MariaDB)"
	@echo "make chaos             the chaos suite, bounded (own PostgreSQL cluster and PgBouncer)"
	@echo "make chaos-full        the chaos suite at the sizes docs/reliability.md reports"
	@echo "Variables: VENV=$(VENV) PYTEST_ARGS='...' PG_URL=$(PG_URL) MYSQL_URL=$(MYSQL_URL)"

venv: $(STAMP)

# Re-installs only when pyproject.toml changed (or the venv is new).
$(STAMP): pyproject.toml
	@if [ ! -x "$(PYTHON)" ]; then \
		for cand in "env PYENV_VERSION=3.13.0 python3.13" \
				"$${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13.0/bin/python3.13" python3.13 python3.12; do \
			if $$cand -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then \
				echo "Creating $(VENV) with $$($$cand --version)"; \
				$$cand -m venv "$(VENV)" || exit 1; \
				break; \
			fi; \
		done; \
		[ -x "$(PYTHON)" ] || { echo "No Python >= 3.12 found (tried pyenv's 3.13.0, python3.13, python3.12)" >&2; exit 1; }; \
	fi
	$(PYTHON) -m pip install --quiet -e ".[$(EXTRAS)]" $(if $(DJANGO),"$(DJANGO)")
	@touch "$(STAMP)"

# Starts the local PostgreSQL cluster if it is not accepting connections, and creates the
# development database (the test suite creates its own).
postgres:
	@if ! pg_isready -q -h $(PG_HOST) -p $(PG_PORT); then \
		echo "Starting PostgreSQL"; \
		pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | sort -V | tail -n 1) main start; \
		for i in $$(seq 60); do pg_isready -q -h $(PG_HOST) -p $(PG_PORT) && break; sleep 1; done; \
		pg_isready -h $(PG_HOST) -p $(PG_PORT) || { echo "PostgreSQL is not reachable" >&2; exit 1; }; \
	fi
	@psql -h $(PG_HOST) -p $(PG_PORT) -U postgres -d postgres -tAc \
		"SELECT 1 FROM pg_database WHERE datname = '$(PG_DB)'" | grep -q 1 \
		|| createdb -h $(PG_HOST) -p $(PG_PORT) -U postgres $(PG_DB)

# Starts the local MariaDB server if it does not answer, and creates the development database
# (the test suite creates its own).
mariadb:
	@if ! mysqladmin ping -h$(MYSQL_HOST) -P$(MYSQL_PORT) -uroot >/dev/null 2>&1; then \
		echo "Starting MariaDB"; \
		start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd; \
		for i in $$(seq 60); do mysqladmin ping -h$(MYSQL_HOST) -P$(MYSQL_PORT) -uroot >/dev/null 2>&1 && break; sleep 1; done; \
		mysqladmin ping -h$(MYSQL_HOST) -P$(MYSQL_PORT) -uroot || { echo "MariaDB is not reachable" >&2; exit 1; }; \
	fi
	@mysql -h$(MYSQL_HOST) -P$(MYSQL_PORT) -uroot -e \
		"CREATE DATABASE IF NOT EXISTS \`$(MYSQL_DB)\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"

demo: venv
	$(SQLITE_ENV) $(MANAGE) migrate --noinput
	$(SQLITE_ENV) $(MANAGE) rexecutor_demo

# pytest exits non-zero when it collects no test (status 5); that fails the target, as it should.
test: test-sqlite test-postgres test-mariadb

test-sqlite: venv
	$(SQLITE_ENV) $(PYTHON) -m pytest $(PYTEST_ARGS)

test-postgres: venv postgres
	$(POSTGRES_ENV) $(PYTHON) -m pytest $(PYTEST_ARGS)

# The PostgreSQL server-restart tests never run here: they restart PostgreSQL, not MariaDB.
test-mariadb: venv mariadb
	$(MYSQL_ENV) $(PYTHON) -m pytest --ignore=tests/test_worker_postgres_restarts.py $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(SQLITE_ENV) $(VENV)/bin/mypy django_rexecutor

migrations-check: venv
	$(SQLITE_ENV) $(MANAGE) makemigrations --check --dry-run

bench: venv postgres mariadb
	$(PYTHON) -m pip install --quiet -e ".[dev,bench]"  # the peers' libraries, for their rows
	$(POSTGRES_ENV) $(PYTHON) tests/benchmarks/bench.py --mysql-url $(MYSQL_URL) $(BENCH_ARGS)

# The chaos suite starts its own PostgreSQL cluster (CHAOS_PG_PORT, default 5433) and PgBouncer
# (CHAOS_PGBOUNCER_PORT, default 6433); it never restarts or kills backends of the one above.
# Figures go to artifacts/chaos-<scale>.json (CHAOS_FIGURES overrides).
CHAOS_ARGS ?=
CHAOS_SCALE ?= ci
chaos: venv
	env -u DATABASE_URL CHAOS_SCALE=$(CHAOS_SCALE) $(PYTHON) -m pytest -p tests.chaos.cluster tests/chaos -v -p no:cacheprovider $(CHAOS_ARGS)

chaos-full: venv
	$(MAKE) --no-print-directory chaos CHAOS_SCALE=full

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
	find django_rexecutor tests testproject -name __pycache__ -type d -prune -exec rm -rf {} +
