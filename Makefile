# Every target creates .venv and installs the project into it if needed, so a fresh clone needs
# nothing but `make demo` or `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
PY := $(VENV)/bin/python
HFT := $(VENV)/bin/hft
STAMP := $(VENV)/.installed-stamp

.PHONY: help install native demo test check lint format types pytest bench clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml setup.py libshm/_ext/fastpath.c services/md_recorder/_ext/csvscan.c
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "make: Python 3.11 or newer is needed (found $$($(PYTHON) --version 2>&1)); set PYTHON=/path/to/python3.11"; exit 2; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its dev tools

# The engine's core compiled with mypyc (services/engine/native.py lists the modules), again
# whenever an engine source changes. Optional: where it cannot be built the engine runs from its
# sources (the same journal, slower), and `hft doctor` says so.
NATIVE := services/engine/native.stamp
NATIVE_LOG := $(VENV)/native-build.log

$(NATIVE): setup.py $(wildcard services/engine/*.py services/engine/indicators/*.py \
	  services/engine/adapters/paper/*.py) | $(STAMP)
	@echo "make: compiling the engine's core with mypyc (about 2 minutes; log in $(NATIVE_LOG))"
	@rm -f $(NATIVE) $$(find services -name '*.so')  # none left of a module no longer compiled
	@HFT_MYPYC=1 $(PY) setup.py build_ext --inplace >$(NATIVE_LOG) 2>&1 || \
	  { tail -5 $(NATIVE_LOG); echo "make: the engine's core could not be compiled (log: \
	$(NATIVE_LOG)); it runs from its sources, slower"; }

native: $(NATIVE) ## compile the engine's core with mypyc (every target that runs it does)

RECORDING := var/recordings/20210104

# The bundled real day (data/market), imported as md_recorder records: configs/replay.toml reads it.
$(RECORDING)/head: data/market/IF2101_20210104.csv.gz | $(STAMP)
	rm -rf $(RECORDING)
	$(HFT) import --format ctp-csv $< --out var/recordings

demo: $(STAMP) $(NATIVE) $(RECORDING)/head ## run the suite in paper-trading mode on the bundled recording
	$(HFT) doctor --config configs/replay.toml
	$(HFT) journal info $(RECORDING)
	@rm -rf var/replay /dev/shm/hft-replay  # each demo trades the day afresh
	@token=$${HFT_MONITOR_ADMIN_TOKEN:-$$($(PY) -c 'import secrets; print(secrets.token_hex(16))')}; \
	echo "demo: the bundled IF2101 day replayed at 10x, traded on the paper simulator"; \
	echo "demo: dashboard http://127.0.0.1:8766/  admin token $$token  (Ctrl-C stops it all)"; \
	echo "demo: Prometheus metrics http://127.0.0.1:9105/metrics (md_recorder), :9106/metrics (engine), :8766/metrics (monitor)"; \
	HFT_MONITOR_ADMIN_TOKEN=$$token $(HFT) up --config configs/replay.toml

test: check pytest ## lint, types and the whole test suite

check: lint types ## ruff and mypy only

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP) ## rewrite sources with ruff's formatter and fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

types: $(STAMP)
	$(VENV)/bin/mypy

# The CTP tests need the zh_CN.GB18030 locale: where the system lacks it, it is compiled into
# the venv without root (localedef --no-archive) and given to the tests through LOCPATH; where it
# cannot be, one line says what to install (and the CTP tests are skipped, or fail under CI).
LOCALE_DIR := $(abspath $(VENV))/locale

pytest: $(STAMP) $(NATIVE)
	@locpath=$$($(PY) -m contracts.ctp_locale --provide $(LOCALE_DIR)) || locpath=; \
	if [ -n "$$locpath" ]; then echo "make: the CTP locale is in $$locpath (LOCPATH)"; \
	  export LOCPATH="$$locpath"; fi; \
	$(VENV)/bin/pytest

bench: $(STAMP) $(NATIVE) ## run the benchmarks and print their figures (see docs/BENCHMARKS.md)
	$(HFT) bench journal
	$(HFT) bench md_recorder
	$(HFT) bench engine
	$(HFT) bench paper
	$(HFT) bench backtest
	$(HFT) bench indicators
	$(HFT) bench monitor
	$(HFT) bench relay
	@locpath=$$($(PY) -m contracts.ctp_locale --provide $(LOCALE_DIR)) || locpath=; \
	if [ -n "$$locpath" ]; then export LOCPATH="$$locpath"; fi; $(HFT) bench ctp
	$(HFT) bench soak

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build libshm/_fastpath.*.so \
	  services/engine/native.stamp
	find services -name '*.so' -delete
