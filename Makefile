# `make run` and `make test` must work on a fresh machine with Python 3.11, Node/npm and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: install run test lint typecheck unit format clean bench browser

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# Azurite (the Azure Storage emulator) for the Table Storage tests and `make run AZURITE=1`.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

# Debian's Chromium and its driver for the sandbox console's browser test (CI runs as root).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; \
	  else echo "make: the browser test needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"; exit 1; fi; }

install: $(STAMP) $(NODE_STAMP)

local.settings.json:
	cp local.settings.json.example local.settings.json

run: install local.settings.json
	$(PY) -m devhost $(if $(AZURITE),--azurite)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: install
	$(PY) -m mypy

unit: install browser
	$(PY) -m pytest

test: lint typecheck unit

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) node_modules .azurite .pytest_cache .mypy_cache .ruff_cache

bench: install
	$(PY) -m bench
