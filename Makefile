# Two commands do all set-up on a fresh machine: `make demo` runs the product, `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
export DJANGO_DEBUG ?= 1
# The demo catalogue's feed category is the answer the classifier learns: its feature config leaves it out.
export CLASSIFIER_FEATURE_CONFIG ?= $(CURDIR)/demo/classifier.toml
export PORT

.PHONY: install services migrate demo demo-data test stop status lint full-myntra

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt -c constraints.txt
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: $(VENV)/.installed node_modules/.installed

services: install
	$(PY) bin/localservices.py start

migrate: services
	$(PY) manage.py migrate --noinput -v0

demo-data: migrate
	$(PY) manage.py ensure_admin --demo-users
	$(PY) manage.py load_demo

demo: demo-data
	$(PY) manage.py collectstatic --noinput -v0
	$(PY) bin/localservices.py start-app
	@echo
	@echo "  Labelapp is running on http://127.0.0.1:$(PORT)/  (admin: http://127.0.0.1:$(PORT)/admin/, API docs: http://127.0.0.1:$(PORT)/api/v1/docs/)"
	@echo "  Log in as admin / admin, labeller / admin or reviewer / admin. Logs: .local/logs/. Stop with: make stop"

test: services
	$(PY) -m pytest

lint: install
	$(VENV)/bin/lint-imports

stop:
	@if [ -x $(PY) ]; then $(PY) bin/localservices.py stop; fi

status:
	@$(PY) bin/localservices.py status

# The whole Myntra catalogue (44k products, 9.6k photos) from ../shared, after `make demo-data`.
full-myntra: migrate
	$(PY) manage.py import_products ../shared/datasets/myntra-fashion/styles.csv --source myntra --mapping demo/mappings/myntra.toml --images ../shared/datasets/myntra-fashion/images
	$(PY) manage.py apply_rules
