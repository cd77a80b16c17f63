# fast_seg: every target does its own setup, so `make test` / `make demo` work on a fresh clone.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PROTO_SRC := $(wildcard protos/*.proto)
PROTO_OUT := $(patsubst protos/%.proto,fast_seg/protos/%_pb2.py,$(PROTO_SRC))
STAMP := $(VENV)/.installed

.PHONY: install build-protos test test-all demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[export,test]"
	touch $(STAMP)

build-protos: $(PROTO_OUT)

$(PROTO_OUT) &: $(PROTO_SRC) $(STAMP)
	$(PY) -m grpc_tools.protoc -Ifast_seg/protos=protos --python_out=. $(PROTO_SRC)

test: build-protos
	$(PY) -m pytest -q

test-all: build-protos
	$(PY) -m pytest -q -m ""

demo: build-protos
	$(PY) -m fast_seg.tools.demo --output_dir demo_output

bench: build-protos
	$(PY) -m fast_seg.tools.benchmark --output_json bench_output/benchmark.json

clean:
	rm -rf demo_output bench_output fast_seg/protos/*_pb2.py
