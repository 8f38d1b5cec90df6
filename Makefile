# Two commands for a newcomer: `make demo` and `make test`. Everything runs from .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
# Two stamps: the runtime (what the server, the uploader and the demo need, as in the Docker
# image) and everything (the runtime plus the test tools). Each is redone when its pins change;
# everything follows the runtime, so `make demo` then `make test` adds only the test tools.
RUNTIME_STAMP := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed

.PHONY: install demo test test-long test-country lint format faults model-long bench serve clean agency-tool

install: $(STAMP)

$(RUNTIME_STAMP): requirements-runtime.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements-runtime.txt
	touch $(RUNTIME_STAMP)

$(STAMP): requirements.txt $(RUNTIME_STAMP)
	$(PIP) -r requirements.txt
	touch $(STAMP)

## A whole lottery round on generated data: server, five agencies, draw, winners.
## `make demo KEEP=1` keeps the server up afterwards for a look at its page (Ctrl-C stops it).
## It installs only the runtime (requirements-runtime.txt); `make test` adds the test tools.
demo: $(RUNTIME_STAMP)
	$(PY) -m devtools.demo $(if $(KEEP),--keep)

## Both test targets run JOBS test files at a time (pytest-xdist; a file's tests share a process,
## so a module's server or fuzz run is set up once). Most of a test's time is waiting on a server,
## an uploader or a failover: on 2 cores, 4 at a time took `make test` from 383 s to 201 s and
## `make test-long` from ~430 s to 248 s. JOBS=0 runs them one at a time in one process.
JOBS ?= 4
XDIST = $(if $(filter 0,$(JOBS)),-p no:xdist,-n $(JOBS) --dist loadfile)

## The test suite, about 3 minutes on 2 cores: every layer (unit, API, contract, integration on
## real gunicorn and PostgreSQL, disk faults, fuzzing of the parsers). Tests marked `long` are
## left to `make test-long`; `pytest path::test` still runs any one test, long or not.
test: $(STAMP)
	$(PY) -m pytest -q $(XDIST) -m "not long"

## What must stay long (marker `long`): schemathesis on live servers, the model-based upload
## test, the browser, three rounds back to back, server and worker kills, the README run as
## written, a PostgreSQL failover on a real pg_auto_failover formation (two faults, ~50 s each
## with the monitor's defaults). About 4 minutes. CI runs `make test`, then this: every test.
test-long: $(STAMP)
	$(PY) -m pytest -q $(XDIST) -m "long and not country"

## A country's round: 100,000 agencies of 10 bets each, stored once, every agency's winners right
## (issue 21). About 2.5 minutes alone on 2 cores: left out of `make test-long` and CI for time.
test-country: $(STAMP)
	$(PY) -m pytest -q -m country

## Style and types: ruff's lint rules and formatting, checked; then mypy strict on app/ and client/
## (settings in pyproject.toml). CI runs this.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

## Reformat the tree and apply ruff's safe fixes.
format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## Only the fault-injection tests, the long ones (server and worker kills) included.
faults: $(STAMP)
	$(PY) -m pytest -q -m faults

## The model-based upload test, long: LOTTERY_MODEL_EXAMPLES examples (500 unless set).
model-long: $(STAMP)
	LOTTERY_MODEL_EXAMPLES=$${LOTTERY_MODEL_EXAMPLES:-500} $(PY) -m pytest -q -m model

## Benchmarks: prints a table and writes bench/results.json.
bench: $(STAMP)
	$(PY) -m bench

## The server on 127.0.0.1:8000 (settings from LOTTERY_* variables).
serve: $(RUNTIME_STAMP)
	$(VENV)/bin/gunicorn -c gunicorn.conf.py

## The uploader as one file for the agencies: dist/lottery-agency.pyz (python3 lottery-agency.pyz run ...).
agency-tool: $(RUNTIME_STAMP)
	$(PY) -m client.agency_tool

clean:
	rm -rf $(VENV) data .pytest_cache
