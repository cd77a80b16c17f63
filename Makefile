# fast_seg: every target does its own setup, so `make test` / `make demo` work on a fresh clone.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PROTO_SRC := $(wildcard protos/*.proto)
PROTO_OUT := $(patsubst protos/%.proto,fast_seg/protos/%_pb2.py,$(PROTO_SRC))
STAMP := $(VENV)/.installed

.PHONY: install build-protos test test-all lint format demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[export,video,test]"
	touch $(STAMP)

build-protos: $(PROTO_OUT)

$(PROTO_OUT) &: $(PROTO_SRC) $(STAMP)
	$(PY) -m grpc_tools.protoc -Ifast_seg/protos=protos --python_out=. $(PROTO_SRC)

# Two pytest workers: most test time is single-threaded tracing, so 2 cores
# finish the suite in ~55% of the serial time. Module fixtures stay in one
# worker (--dist loadfile). TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2
PYTEST := TF_CPP_MIN_LOG_LEVEL=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test: build-protos
	$(PYTEST)

test-all: build-protos
	$(PYTEST) -m ""

# pylint with the house rules (.pylintrc); CI runs it before the tests.
lint: install
	$(PY) -m pylint --rcfile=.pylintrc fast_seg third_party

# yapf (.style.yapf) on the files you name: make format FILES="fast_seg/x.py"
format: install
	$(PY) -m yapf --in-place $(FILES)

DEMO := demo_output
DEMO_CONFIG := configs/icnet_mobilenet_v2_synthetic_128.config
demo: build-protos
	rm -rf $(DEMO)
	$(PY) -m fast_seg.data.synthetic --output_dir $(DEMO)/data --num_sample_images 8
	$(PY) train.py --config_path $(DEMO_CONFIG) --logdir $(DEMO)/train
	$(PY) eval.py --config_path $(DEMO_CONFIG) --train_dir $(DEMO)/train --eval_dir $(DEMO)/eval
	$(PY) export.py --config_path $(DEMO_CONFIG) --trained_checkpoint $(DEMO)/train \
	    --output_dir $(DEMO)/export --input_shape 1,128,128,3
	$(PY) predict.py --model $(DEMO)/export --input $(DEMO)/data/images \
	    --output_dir $(DEMO)/predictions
	@echo "Demo done: metrics in $(DEMO)/eval/metrics.json, overlays in $(DEMO)/predictions"

# Every zoo model at 1024x2048 on every runtime, the machine's ceiling, and
# training throughput / memory of the demo model on generated data.
BENCH := bench_output
bench: build-protos
	$(PY) -m fast_seg.data.synthetic --output_dir $(BENCH)/data --num_train 64 --num_val 8
	$(PY) -m fast_seg.tools.benchmark --output_json $(BENCH)/benchmark.json \
	    --train_configs $(DEMO_CONFIG) --train_input_path '$(BENCH)/data/train-*.tfrecord'


clean:
	rm -rf demo_output bench_output fast_seg/protos/*_pb2.py
