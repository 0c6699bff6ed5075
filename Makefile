# callsec-ari: every target a user or CI needs. `make test` installs what is missing first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_PORT ?= 55432
export CALLSEC_TEST_PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:$(PG_PORT)/callsec_test

.PHONY: help venv deps lint typecheck unit integration e2e test leak-scan demo run \
        lowest-check package-check \
        sandbox-up sandbox-down sandbox-status pg-up pg-down bench soak sounds clean

help:
	@echo "make demo | test | run | bench | sandbox-up | sandbox-down | sandbox-status"

# constraints.txt: the exact versions (tools/requirements.py freeze writes it, a unit test checks it)
PIN := -c constraints.txt --build-constraint constraints.txt

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(PIN) --upgrade setuptools wheel
	$(BIN)/pip install -q $(PIN) -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

deps:
	tools/install-deps.sh

# ruff, and the layers contract (.importlinter): an upward import or a circle between layers fails
lint: venv
	$(BIN)/ruff check callsec_ari tests tools bench
	$(BIN)/lint-imports --no-cache

typecheck: venv
	$(BIN)/mypy

unit: venv
	tools/run-tier.sh unit tests/unit -q

integration: venv sandbox-up pg-up
	tools/sandbox.sh clear-logs
	rm -f var/test/secrets.txt
	tools/run-tier.sh integration tests/integration -q

e2e: venv sandbox-up
	tools/run-tier.sh e2e tests/e2e -q

# The lowest versions setup.cfg allows (X==lower bound of every runtime dependency, the dev tools
# as in constraints.txt) in a fresh venv outside the repo, and the unit tier run there, then the
# store's database tests (SQLite and PostgreSQL: sqlalchemy, alembic, psycopg at their lowest).
LOWEST_VENV ?= /tmp/callsec-lowest-venv
LOWEST_DB_TESTS := $(addprefix tests/integration/store/test_store_,db.py customers_db.py vault_db.py audit_db.py)
lowest-check: venv pg-up
	rm -rf $(LOWEST_VENV)
	$(PYTHON) -m venv $(LOWEST_VENV)
	$(BIN)/python tools/requirements.py lowest > $(LOWEST_VENV)/lowest.txt
	$(BIN)/python tools/requirements.py requires > $(LOWEST_VENV)/requires.txt
	$(LOWEST_VENV)/bin/pip install -q --upgrade pip
	$(LOWEST_VENV)/bin/pip install -q -c $(LOWEST_VENV)/lowest.txt -r $(LOWEST_VENV)/requires.txt
	$(LOWEST_VENV)/bin/pip freeze | tr _ - | grep -i -f <(sed 's/==.*/==/' $(LOWEST_VENV)/lowest.txt)
	TIER_PYTHON=$(LOWEST_VENV)/bin/python tools/run-tier.sh lowest tests/unit -q -p no:cacheprovider
	TIER_PYTHON=$(LOWEST_VENV)/bin/python tools/run-tier.sh lowest-db $(LOWEST_DB_TESTS) -q -p no:cacheprovider

# The built sdist and wheel, the wheel installed into a fresh venv outside the repo, and from
# there: install-assets, check-config, db upgrade, keys init, and a verified sandbox call.
package-check: venv sandbox-up
	PYTHON=$(PYTHON) tools/package-check.sh

# The callsec image built with podman on a local debootstrap base, hadolint, and run against the
# sandbox: /healthz, its HEALTHCHECK and a verified call (tools/container-check.sh; ~3 min cold).
.PHONY: container-check
container-check: venv sandbox-up
	tools/container-check.sh

leak-scan: venv
	$(BIN)/python tools/leak_scan.py

test: deps venv lint typecheck unit integration e2e leak-scan

sandbox-up: deps
	tools/sandbox.sh up

sandbox-down:
	tools/sandbox.sh down

sandbox-status:
	tools/sandbox.sh status

pg-up: deps
	tools/pg.sh start >/dev/null

pg-down:
	tools/pg.sh stop

run: venv sandbox-up
	$(BIN)/callsec db upgrade
	$(BIN)/callsec keys init
	$(BIN)/callsec run

demo: deps venv sandbox-up
	$(BIN)/python tools/demo.py

bench: venv sandbox-up pg-up
	$(BIN)/python bench/run.py

soak: venv sandbox-up
	$(BIN)/python bench/soak.py --minutes $(or $(MINUTES),10)

media-bench: venv
	$(BIN)/python bench/media_bench.py --relays $(or $(RELAYS),100)

sounds:
	tools/make_sounds.sh

clean:
	rm -rf var/e2e var/test .mypy_cache .ruff_cache .pytest_cache
