# The two commands a newcomer needs: `make demo` and `make test`.
# Both create .venv and install everything on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The source roots: each holds part of the `seedcast` package (see README "Layout").
ROOTS := platform origin edge nameserver tracker peer

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

# Byte-compile our sources first: `up` starts ~10 Python processes at once, and
# without .pyc files (PYTHONDONTWRITEBYTECODE) each would compile them again.
demo: setup
	@$(BIN)/python -m compileall -q $(ROOTS)
	$(BIN)/seedcast up --demo

# Import boundaries (pyproject's [tool.importlinter]) are read from the source
# roots directly, so every root's part of the namespace package is seen.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PYTHONPATH=$(subst $(eval) ,:,$(ROOTS)) $(BIN)/lint-imports --no-cache

# The folders are the import tree (pyproject's mypy_path lists the roots).
typecheck: setup
	$(BIN)/mypy $(ROOTS)

test: setup lint typecheck
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
