# Everything installs what it needs first: a fresh clone needs only `make run`, `make demo` or `make test`.
# `run` and `demo` install the runtime dependencies only; the other targets add the dev toolchain.
PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
VERSION := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
RUNTIME := $(VENV)/.runtime-$(VERSION)
STAMP   := $(VENV)/.installed-$(VERSION)
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run demo test lint bench frontier fuzz soak proto servers nats-server

$(VENV)/bin/pip:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUNTIME): pyproject.toml | $(VENV)/bin/pip
	$(BIN)/pip install --quiet -e .
	rm -f $(VENV)/.runtime-* && touch $@

$(STAMP): pyproject.toml | $(VENV)/bin/pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* $(VENV)/.runtime-* && touch $@ $(RUNTIME)

# nats-server and prometheus are real servers the tests start, chromium the browser that renders /status; Debian
# packages them.
servers:
	@command -v nats-server >/dev/null && command -v prometheus >/dev/null && command -v chromium >/dev/null || \
	  ( $(SUDO) apt-get update && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y nats-server prometheus chromium )

run: $(RUNTIME)
	$(BIN)/pd-scaler serve

# The demo needs nats-server only (not the test servers' browser).
nats-server:
	@command -v nats-server >/dev/null || \
	  ( $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y nats-server )

# A local nats-server with Dynamo's prefill queue, a replayed trace, prefill workers and the scaler (Ctrl-C stops).
demo: $(RUNTIME) nats-server
	$(BIN)/pd-scaler demo

test: $(STAMP) servers
	$(BIN)/pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check scaler tests bench
	$(BIN)/ruff format --check scaler tests bench
	$(BIN)/mypy

# Every benchmark prints its figures and a ratio against a baseline measured in the same run.
bench: $(STAMP) servers
	@for b in activation grpc_load source_load simulate; do \
	  echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py || exit 1; done

# Each policy's main knob swept on both bundled Azure traces at their recorded rate and at 10x, three seeds each,
# over two processes: SLO against GPU-hours, Pareto fronts, the oracle and which front dominates which.
frontier: $(STAMP)
	$(BIN)/pd-scaler simulate frontier --load-scales 1,10 --seeds 3 --workers 2 --json frontier.json --plot frontier.png

# Long fuzzing of the gRPC server's metadata handling (the suite runs a shorter pass).
fuzz: $(STAMP)
	PD_SCALER_FUZZ_EXAMPLES=50000 $(BIN)/pytest -q -p no:cacheprovider tests/test_fuzz.py

# Ten minutes at 1,000 calls/s; reports resident memory at start and end.
soak: $(STAMP) servers
	$(BIN)/python bench/soak.py

# Regenerate the committed stubs from protos/ (tests/test_proto.py fails when they differ).
proto: $(STAMP)
	PATH=$(BIN):$$PATH $(BIN)/python -m grpc_tools.protoc -Iscaler/proto=protos --python_out=. --grpc_python_out=. \
	  --mypy_out=. --mypy_grpc_out=. scaler/proto/externalscaler.proto
