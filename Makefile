# dicomflow: `make run` starts the product on the embedded defaults, `make test` proves it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEBIAN_PACKAGES := dcmtk orthanc iproute2 util-linux sqlite3 curl dicom3tools redis-server postgresql orthanc-postgresql

.PHONY: run test check lint format typecheck imports spelling pytest system-deps clean bench

# The published icometrix client, unmodified, in a virtualenv of its own (it declares no dependencies:
# requests and pydantic 2 are what it imports). The compatibility tests run it against dicomflow.
ICOMETRIX_VENV := .venv-icometrix
ICOMETRIX_STAMP := $(ICOMETRIX_VENV)/.installed
$(ICOMETRIX_STAMP):
	$(PYTHON) -m venv $(ICOMETRIX_VENV)
	$(ICOMETRIX_VENV)/bin/pip install -q icometrix-sdk==0.0.9 requests==2.34.2 urllib3==2.8.0 pydantic==2.14.3
	touch $(ICOMETRIX_STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/dicomflow serve

# Debian packages the tests drive (DCMTK tools, Orthanc as a peer, redis-server as the Celery broker,
# PostgreSQL: tests/pg.py runs a private cluster from /usr/lib/postgresql/<version>/bin; orthanc-postgresql
# for bench/ingest_pg.sh). The packaged services are kept from starting: tests start their own, on loopback
# (Orthanc inside a private network namespace).
system-deps:
	@missing=""; for b in storescu echoscu dcmsend findscu dcmcjpeg dcmcjpls dcmcrle dcmconv Orthanc unshare ip sqlite3 curl dciodvfy redis-server runuser \
	  $$(ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null || echo pg_ctl); do \
	  command -v $$b >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  made_policy=0; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1; fi; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(DEBIAN_PACKAGES); \
	  rc=$$?; [ $$made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d; \
	  (service orthanc stop; service redis-server stop; service postgresql stop) >/dev/null 2>&1; exit $$rc; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy
	MYPYPATH=src:tests:tests/e2e $(BIN)/mypy --check-untyped-defs --explicit-package-bases --exclude tests/e2e/icometrix tests

# The layer contracts in pyproject's [tool.importlinter].
imports: $(STAMP)
	$(BIN)/lint-imports --no-cache

spelling: $(STAMP)
	$(BIN)/codespell src tests bench README.md

check: lint typecheck imports spelling

# The suite on every core (pytest-xdist: each worker its own ports and data directories; the tests sharing a
# module's server stay on one worker, see tests/conftest.py), then the tests marked `serial` alone; coverage
# is summed over both passes and must stay above the floor in pyproject.
PYTEST_WORKERS ?= auto
pytest: $(STAMP) $(ICOMETRIX_STAMP) system-deps
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadgroup -m "not serial" --cov --cov-report= --cov-fail-under=0
	$(BIN)/pytest -q -m serial --cov --cov-append --cov-report=term:skip-covered

test: system-deps check pytest

bench: $(STAMP) system-deps
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/celery_jobs.py

clean:
	rm -rf $(VENV) $(ICOMETRIX_VENV) dicomflow-data .pytest_cache .mypy_cache .ruff_cache
