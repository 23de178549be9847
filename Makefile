# Two commands: `make run` (the quick study) and `make test` (the whole suite). Both set up
# .venv and install the project from its own files first; both are idempotent.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium
# onnxruntime-web for the demo page, pinned by web/package-lock.json (npm ci writes the marker file).
WEB_DEPS := web/node_modules/.package-lock.json
# The suite runs in one pytest worker per core, a whole test file per worker (module fixtures such
# as the smoke study are built once); conftest splits torch threads between the workers.
PYTEST_WORKERS ?= -n auto --dist loadfile
PYTEST_ARGS ?=

.PHONY: run test setup browser web clean

run: $(STAMP)
	$(BIN)/ganaug study

test: $(STAMP) browser web
	$(BIN)/python -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)

setup: $(STAMP) web

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The browser tests drive Debian's Chromium (Playwright's own browser download does not work here).
browser:
	@test -x $(CHROMIUM) || { echo "installing Debian's chromium for the browser tests"; \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

web: $(WEB_DEPS)

$(WEB_DEPS): web/package.json web/package-lock.json
	npm ci --prefix web --no-audit --no-fund --loglevel=error
	touch $(WEB_DEPS)

clean:
	rm -rf $(VENV) .pytest_cache
