# finetune: two commands for a newcomer: `make run` (the whole platform) and `make test` (the whole test suite).
PY := .venv/bin/python
PYTEST := .venv/bin/pytest

.PHONY: setup run stop status logs worker test test-engine test-web lint lint-python lint-schema lint-frontend fmt \
	lock lock-check types types-check frontend-deps frontend-build migrate services

setup:            ## install everything (idempotent)
	bash scripts/install.sh

run:              ## install, start services, migrate, create the admin, start web + workers + beat
	bash scripts/run.sh

stop:             ## stop what `make run` started
	bash scripts/stop.sh

status:
	@curl -sS http://127.0.0.1:$${PORT:-8000}/api/health/ && echo

logs:
	tail -n 50 -f var/log/*.log

services:
	bash scripts/services.sh

migrate: services
	$(PY) manage.py migrate

worker:           ## a foreground training worker (one job at a time), e.g. on a GPU host
	.venv/bin/celery -A finetune worker -Q training -c 1 -n training@%h -l INFO

test: setup services lint   ## the linters and contract checks, then the whole test suite (PostgreSQL/Redis/Celery/daphne/Chromium)
	$(PYTEST) -q

test-engine:
	$(PYTEST) -q tests/engine

test-web:
	$(PYTEST) -q --ignore=tests/engine

# --- checks that `make test` (and so CI) runs first; each fails on a violation --------------------------------------
lint: lock-check lint-python types-check lint-frontend  ## every check below (types-check includes lint-schema)
	@echo "lint: all checks passed"

lint-python:      ## ruff (pinned in requirements-dev.txt) over every Python folder
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

lint-schema:      ## the OpenAPI schema builds without a warning and validates
	$(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null

lint-frontend: frontend-deps  ## TypeScript and ESLint over frontend/src
	cd frontend && npx --no-install tsc --noEmit && npx --no-install eslint --max-warnings=0 .

fmt:
	.venv/bin/ruff format . && .venv/bin/ruff check --fix .

# --- the locked Python dependency set (README "Dependencies") ---------------------------------------------------------
lock:             ## re-lock requirements*.lock after editing requirements*.txt (pins that still fit stay)
	bash scripts/lock.sh

lock-check:       ## the locks were compiled from the requirements files as they are now
	bash scripts/lock.sh --check

# --- the frontend's API types, generated from the OpenAPI schema ------------------------------------------------------
TYPES := frontend/src/api/schema.gen.ts

types: frontend-deps  ## regenerate $(TYPES) from the schema (after changing a serializer or a view)
	bash scripts/api_types.sh $(TYPES)

types-check: frontend-deps  ## the schema validates without a warning and the committed $(TYPES) matches it
	bash scripts/api_types.sh --check $(TYPES)

frontend-deps:
	@test -d frontend/node_modules || (cd frontend && npm ci --no-audit --no-fund --loglevel=error)

frontend-build:
	cd frontend && npm ci --no-audit --no-fund && npm run build
