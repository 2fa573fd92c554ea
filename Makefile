# The two commands a fresh machine needs: `make demo` and `make test`.
# Each creates .venv and installs into it when missing or stale.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKDIR ?= demo-work
PYTEST_ARGS ?=

.PHONY: demo test format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/audiotag run --source demo --preset demo --workdir $(WORKDIR)

test: $(STAMP)
	$(BIN)/ruff check audiotag tasks flows tests bench
	$(BIN)/python -m pytest $(PYTEST_ARGS)

format: $(STAMP)
	$(BIN)/ruff format audiotag tasks flows tests bench

clean:
	rm -rf $(VENV) $(WORKDIR)
