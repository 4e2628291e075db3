# OrderMesh: `make up` brings the whole platform up, `make test` runs every test.
# Ports, paths and credentials come from OM_* environment variables (see README.md).

SHELL := /bin/bash
PYTHON_VERSION ?= 3.11
# uv from PATH if there is one, else a copy the project installs for itself under .local/
UV ?= $(shell command -v uv 2>/dev/null || echo .local/tools/bin/uv)
PY := .venv/bin/python

.PHONY: help install browser up down status clean test test-unit schemas schemas-check lint typecheck bench bench-runtime chaos

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(UV):
	python3 -m pip install --quiet --disable-pip-version-check --target .local/tools uv

.venv/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON_VERSION)
	touch $@

install: .venv/.installed ## create the Python environment from the lock file

up: install ## start Kafka, PostgreSQL and every service; print their URLs
	$(PY) -m tools.infra up --services

down: ## stop exactly what `make up` started (pid files)
	@[ -x $(PY) ] && $(PY) -m tools.infra down || true

status: install ## what is running
	$(PY) -m tools.infra status

clean: down ## stop everything and wipe local data (.local/)
	rm -rf .local

# The dashboard's browser test drives Debian's Chromium and chromedriver (tools/browser.py).
browser: install ## install Chromium and its driver from Debian's packages when missing (needs root)
	$(PY) -m tools.browser ensure

# promtool checks the alert rules (tests/ops/test_observability.py): the one in Debian's
# prometheus package, unpacked into .local/tools (the package is not installed, so no
# Prometheus server or user is set up). apt-get update runs only when the package lists lack it.
PROMTOOL := .local/tools/bin/promtool
$(PROMTOOL):
	@mkdir -p $(@D) && work=$$(mktemp -d) && trap 'rm -rf "$$work"' EXIT && cd "$$work" && \
	  { apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get download prometheus; }; } && \
	  dpkg-deb -x prometheus_*.deb unpacked && install -m 0755 unpacked/usr/bin/promtool $(CURDIR)/$@ && \
	  echo "promtool from Debian's prometheus package: $$($(CURDIR)/$@ --version 2>&1 | head -1)"

promtool: $(PROMTOOL) ## install promtool (Debian's prometheus package) into .local/tools when missing

test: install browser $(PROMTOOL) ## unit + integration tests on a real Kafka and PostgreSQL (started if needed)
	$(PY) -m tools.infra test -- -q $(PYTEST_ARGS)

test-unit: install $(PROMTOOL) ## fast tests only (no broker, no database)
	$(PY) -m pytest -q -m "not integration" $(PYTEST_ARGS)

schemas: install ## regenerate schemas/ from libs/events and docs/permissions.md from the endpoints
	$(PY) -m tools.schemas
	$(PY) -m tools.permissions_doc

schemas-check: install ## fail if schemas/ or docs/permissions.md differs from the code
	$(PY) -m tools.schemas --check
	$(PY) -m tools.permissions_doc --check

# The audit looks every locked package up in PyPI's advisory data (AUDIT_ARGS="-s osv" for OSV's);
# a package it cannot look up fails the audit, as a vulnerability does. AUDIT=off skips it offline.
AUDIT ?= on
lint: install ## ruff (style and security rules), pip-audit of the locked dependencies
	.venv/bin/ruff check libs services tools tests
	@if [ "$(AUDIT)" = off ]; then echo "dependency audit skipped (AUDIT=off)"; else \
	  requirements=$$(mktemp) && trap 'rm -f "$$requirements"' EXIT && \
	  $(UV) export --frozen --format requirements-txt --no-emit-project --quiet -o "$$requirements" && \
	  .venv/bin/pip-audit --strict --disable-pip --require-hashes --progress-spinner off \
	    -r "$$requirements" $(AUDIT_ARGS); fi

typecheck: install ## mypy
	.venv/bin/mypy libs services tools

observability: install ## regenerate deploy/k8s/monitoring/prometheus-rule.yaml from deploy/observability/alerts.yaml
	$(PY) deploy/observability/sync_k8s.py

# What .ci/run runs: every check, then every test. The dependency audit asks PyPI's advisory
# data, which a machine without the internet cannot reach: AUDIT=off skips it there.
ci: install ## lint (ruff, AUDIT=on|off pip-audit), type check, schema and rule checks, then make test
	$(MAKE) lint AUDIT=$(AUDIT)
	$(MAKE) typecheck
	$(MAKE) schemas-check
	$(PY) deploy/observability/sync_k8s.py --check
	$(MAKE) test

# Back up and restore the local platform's databases (tools/backup.py, docs/operations.md):
#   make backup [BACKUP_DIR=.local/backups/<time>]      make restore BACKUP_DIR=<a backup>
backup: install ## pg_dump every OrderMesh database of the local PostgreSQL into BACKUP_DIR
	$(PY) -m tools.backup dump $(if $(BACKUP_DIR),--to "$(BACKUP_DIR)")

restore: install ## pg_restore a backup (BACKUP_DIR=...) into the local PostgreSQL; stop the services first
	@[ -n "$(BACKUP_DIR)" ] || { echo "usage: make restore BACKUP_DIR=<directory written by make backup>"; exit 2; }
	$(PY) -m tools.backup restore "$(BACKUP_DIR)"

# Also the open-loop sweep (bench/results/latency-curve.png, the per-stage breakdown) and the
# eventsourcing peer; BENCH_ARGS="--no-sweep --no-peer" leaves them out.
bench: install ## load the running platform (make up): table, latency curve PNG, stage breakdown, peer
	$(PY) -m tools.bench $(BENCH_ARGS)

bench-runtime: install ## event store append and outbox relay throughput (needs Kafka + PostgreSQL)
	$(PY) -m tools.infra up
	$(PY) -m tools.bench_runtime $(BENCH_ARGS)

.PHONY: token apikey
# make token ROLE=warehouse [WAREHOUSE=NORTH,SOUTH] [SUBJECT=dev-alice]
token: install ## print a development token for ROLE (WAREHOUSE=A,B and SUBJECT= optional)
	@[ -n "$(ROLE)" ] || { echo "usage: make token ROLE=<role> [WAREHOUSE=A,B] [SUBJECT=name]"; exit 2; }
	@$(PY) -m tools.token "$(ROLE)" $(if $(WAREHOUSE),--warehouses "$(WAREHOUSE)") $(if $(SUBJECT),--subject "$(SUBJECT)")

# make apikey ARGS='create --name "web shop" --channel web' | ARGS=list | ARGS='revoke ID --reason ...'
apikey: install ## create, list or revoke API keys on the running platform (ARGS=...)
	@$(PY) -m tools.apikeys $(or $(ARGS),--help)

.PHONY: intake
# make intake [FILE=docs/examples/intake-order.json] [EXTERNAL_ID=WEB-1002]: as a sales channel would
intake: install ## publish an order to the Kafka intake topic and print the answer (FILE=, EXTERNAL_ID=)
	@$(PY) -m tools.intake send $(or $(FILE),docs/examples/intake-order.json) $(if $(EXTERNAL_ID),--external-id "$(EXTERNAL_ID)")

chaos: install ## fault injection under load; writes bench/results/chaos-latest.json
	$(PY) -m tools.chaos $(CHAOS_ARGS)

.PHONY: fuzz
# A longer run of the API fuzzing `make test` runs briefly: every boundary of every schema
# (schemathesis' coverage phase) and FUZZ_EXAMPLES generated requests per operation and caller.
# FUZZ_SEED=n sends other requests; the same seed sends the same ones.
fuzz: install ## fuzz every service's OpenAPI, with and without credentials (FUZZ_EXAMPLES=100)
	OM_FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),100) OM_FUZZ_PHASES=examples,coverage,fuzzing \
	  $(if $(FUZZ_SEED),OM_FUZZ_SEED=$(FUZZ_SEED)) \
	  $(PY) -m tools.infra test -- -q tests/integration/test_fuzz_api.py $(PYTEST_ARGS)
