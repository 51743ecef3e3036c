# The two commands of the README: `make demo` and `make test`.
# Both create .venv and install pivotune into it when missing.
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: demo test test-slow bench setup
setup:
	@bash scripts/bootstrap.sh

demo: setup
	$(BIN)/pivotune demo $(ARGS)

test: setup
	$(BIN)/python -m pytest -m "not slow" $(ARGS)

test-slow: setup
	$(BIN)/python -m pytest -m slow $(ARGS)
