# Everything installs what it needs first: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint bench proto servers

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

# nats-server and prometheus are real servers the tests start; Debian packages them.
servers:
	@command -v nats-server >/dev/null && command -v prometheus >/dev/null || \
	  ( $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y nats-server prometheus )

run: $(STAMP)
	$(BIN)/pd-scaler serve

test: $(STAMP) servers
	$(BIN)/pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check scaler tests bench
	$(BIN)/ruff format --check scaler tests bench
	$(BIN)/mypy

bench: $(STAMP) servers
	$(BIN)/python bench/activation.py

# Regenerate the committed stubs from protos/ (tests/test_proto.py fails when they differ).
proto: $(STAMP)
	PATH=$(BIN):$$PATH $(BIN)/python -m grpc_tools.protoc -Iscaler/proto=protos --python_out=. --grpc_python_out=. \
	  --mypy_out=. --mypy_grpc_out=. scaler/proto/externalscaler.proto
