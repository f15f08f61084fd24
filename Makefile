# detsim developer and user entry points. `make run` and `make test` are the README's two commands.
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
# TORCH_INDEX: the wheel index torch comes from; empty = pip's default (PyPI: CUDA build on Linux, GBs of
# nvidia-* wheels). CPU-only machines: make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.detsim-installed

.PHONY: install run test test-all bench lock mlflow-server mlflow-server-stop clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python pipelines/fastsim.py

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not gpu" -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf outputs multirun results mlruns mlflow.db mlflow.db.lock mlartifacts lightning_logs runs mlflow-server

# --- production (docs/production.md) ---------------------------------------------------------------
MLFLOW_PORT ?= 5000
MLFLOW_HOST ?= 127.0.0.1
MLFLOW_DIR ?= mlflow-server

lock: $(STAMP)                 ## pin every dependency (torch aside) into requirements.lock
	$(BIN)/python docker/make_lock.py

mlflow-server: $(STAMP)        ## MLflow server on 127.0.0.1: sqlite backend + artifact root in $(MLFLOW_DIR)/
	$(BIN)/python -m detsim.tracking.server start --dir $(MLFLOW_DIR) --host $(MLFLOW_HOST) --port $(MLFLOW_PORT)

mlflow-server-stop:            ## stop the server started by `make mlflow-server` (by its PID file)
	$(BIN)/python -m detsim.tracking.server stop --dir $(MLFLOW_DIR)
