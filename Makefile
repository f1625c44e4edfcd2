# Everything installs what it needs first: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint bench fuzz soak proto servers

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

# nats-server and prometheus are real servers the tests start, chromium the browser that renders /status; Debian
# packages them.
servers:
	@command -v nats-server >/dev/null && command -v prometheus >/dev/null && command -v chromium >/dev/null || \
	  ( $(SUDO) apt-get update && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y nats-server prometheus chromium )

run: $(STAMP)
	$(BIN)/pd-scaler serve

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
