# The two commands a fresh machine needs: `make demo` and `make test`.
# Each creates .venv and installs into it when missing or stale.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKDIR ?= demo-work
PYTEST_ARGS ?=
# Test processes; each takes whole test files (module fixtures start one server each).
PYTEST_WORKERS ?= 2
# Operator targets: a Prefect server and an MLflow tracking server on this machine.
PREFECT_PORT ?= 4200
MLFLOW_PORT ?= 5000
SERVER_DIR ?= server-data
GPUS ?= 1
# GPU=1: this server has GPU workers, and the weekly GPU retrain is scheduled
# (prefect.yaml deploys it paused, and `make deploy` says so).
GPU ?= 0
POOL ?= audiotag-cpu
API := http://127.0.0.1:$(PREFECT_PORT)/api
# No Prefect telemetry notice (nor telemetry) from the server, deploy and worker;
# `make worker DO_NOT_TRACK=0` keeps them.
DO_NOT_TRACK ?= 1
export DO_NOT_TRACK
# The servers, workers and deploys talk to 127.0.0.1: never through HTTP(S)_PROXY.
comma := ,
export NO_PROXY := $(NO_PROXY)$(if $(NO_PROXY),$(comma))127.0.0.1,localhost
export no_proxy := $(no_proxy)$(if $(no_proxy),$(comma))127.0.0.1,localhost

.PHONY: demo test format clean server deploy worker browser config-doc

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/audiotag run --source demo --preset demo --workdir $(WORKDIR)

# stdin is /dev/null: a subprocess that reads it gets EOF, never waits on CI's pipe.
test: $(STAMP) browser
	$(BIN)/ruff check audiotag tasks flows tests bench
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS) </dev/null

# The UI test drives Debian's chromium (Playwright downloads no browser).
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null || { \
		echo "installing Debian's chromium for the UI test"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# docs/config.md: every override key with each preset's value (a test checks it is current).
config-doc: $(STAMP)
	$(BIN)/python -m audiotag.config.doc > docs/config.md

format: $(STAMP)
	$(BIN)/ruff format audiotag tasks flows tests bench

# Prefect server and UI on 127.0.0.1:$(PREFECT_PORT) (the UI calls the API on that port), the MLflow tracking server and UI on
# 127.0.0.1:$(MLFLOW_PORT) (runs and artifacts under $(SERVER_DIR)); Ctrl-C stops both.
server: $(STAMP)
	mkdir -p $(SERVER_DIR)
	$(BIN)/mlflow server --host 127.0.0.1 --port $(MLFLOW_PORT) \
		--backend-store-uri sqlite:///$(abspath $(SERVER_DIR))/mlflow.db \
		--artifacts-destination $(abspath $(SERVER_DIR))/mlartifacts & \
	trap 'kill %1' EXIT INT TERM; \
	PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_UI_API_URL=$(API) \
		$(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

# Work pools, the `gpu` global concurrency limit (GPUS: the GPUs over all workers;
# a fold on a GPU holds one slot) and every deployment of prefect.yaml, on the
# server of `make server`.
deploy: $(STAMP)
	PREFECT_API_URL=$(API) $(BIN)/prefect work-pool create audiotag-cpu --type process --overwrite
	PREFECT_API_URL=$(API) $(BIN)/prefect work-pool create audiotag-gpu --type docker --overwrite \
		--base-job-template deployments/docker-gpu-job-template.json
	PREFECT_API_URL=$(API) $(BIN)/prefect gcl create gpu --limit $(GPUS) \
		|| PREFECT_API_URL=$(API) $(BIN)/prefect gcl update gpu --limit $(GPUS)
	PREFECT_API_URL=$(API) $(BIN)/prefect --no-prompt deploy --all
	PREFECT_API_URL=$(API) $(BIN)/python -m flows.deploy $(GPU)

# A process worker on this machine: runs flow runs of $(POOL) from this checkout,
# tracking to the MLflow server of `make server`.
worker: $(STAMP)
	AUDIOTAG_HOME=$(CURDIR) PREFECT_API_URL=$(API) \
		MLFLOW_TRACKING_URI=http://127.0.0.1:$(MLFLOW_PORT) \
		$(BIN)/prefect worker start --pool $(POOL) --type process

clean:
	rm -rf $(VENV) $(WORKDIR)
