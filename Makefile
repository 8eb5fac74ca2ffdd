# finetune: two commands for a newcomer: `make run` (the whole platform) and `make test` (the whole test suite).
PY := .venv/bin/python
PYTEST := .venv/bin/pytest

.PHONY: setup run stop status logs worker test test-engine test-web lint fmt frontend-build migrate services

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

test: setup services   ## the whole test suite: web (real PostgreSQL/Redis/Celery/daphne/Chromium) and engine
	$(PYTEST) -q

test-engine:
	$(PYTEST) -q tests/engine

test-web:
	$(PYTEST) -q --ignore=tests/engine

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check accounts dashboard finetune training tests

fmt:
	.venv/bin/ruff format accounts dashboard finetune training tests && .venv/bin/ruff check --fix .

frontend-build:
	cd frontend && npm ci --no-audit --no-fund && npm run build
