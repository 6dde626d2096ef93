# The two commands a newcomer needs: `make demo` and `make test`.
# Both create .venv and install everything on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup lint typecheck clean

setup: $(STAMP)

$(STAMP): pyproject.toml $(wildcard package.json)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@if [ -f package.json ]; then \
	  if command -v npm >/dev/null; then npm install --no-audit --no-fund --silent; \
	  else echo "npm not found: the web player page needs dash.js (apt-get install npm)"; fi; fi
	@touch $(STAMP)

demo: setup
	$(BIN)/seedcast up

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy platform/config.py platform/units.py platform/ratelimit.py platform/errors.py

test: setup lint typecheck
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
