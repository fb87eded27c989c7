# emodistill: the two commands a newcomer needs are `make serve` and `make test`.
# Every target installs what it needs first.

PYTHON ?= python3
VENV ?= .venv
# The torch requirement, installed before the project. `torch==2.13.0` takes the local CPU
# build where pip is capped to it (this workplace, CI) and the normal CUDA wheel from PyPI
# on a GPU host. A GPU host that wants another build: make install TORCH_SPEC='torch==2.14.1'.
# Empty (TORCH_SPEC=) installs no torch: the service image.
TORCH_SPEC ?= torch==2.13.0
# Which extras of pyproject.toml to install. A GPU serving host swaps serve-cpu for serve
# (onnxruntime-gpu; the two onnxruntime builds cannot share one environment).
EXTRAS ?= train,export,serve-cpu,dev,bench
# Images built on a PyTorch base pass --system-site-packages so the base torch is reused.
VENV_FLAGS ?=
DEMO_DIR ?= models/demo

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lint test demo serve bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	test -z "$(TORCH_SPEC)" || $(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy emodistill service export

test: install lint
	$(BIN)/python -m pytest

# The demo model: synthetic corpus, both teachers, the tiny student (about 5 minutes on
# 2 CPU cores), then its verified ONNX bundle. Built once; delete $(DEMO_DIR) to rebuild.
demo: install $(DEMO_DIR)/bundle/bundle.json

$(DEMO_DIR)/checkpoint/config.json:
	$(BIN)/python -m training demo --out $(DEMO_DIR)

$(DEMO_DIR)/bundle/bundle.json: $(DEMO_DIR)/checkpoint/config.json
	$(BIN)/python -m export --checkpoint $(DEMO_DIR)/checkpoint --out $(DEMO_DIR)/bundle

# Serves the demo bundle on http://127.0.0.1:8000 (the page at /, the API docs at /docs).
# Settings: flags after ARGS=..., or EMODISTILL_* variables (python -m service --help).
serve: demo
	$(BIN)/python -m service --model $(DEMO_DIR)/bundle $(ARGS)

# Benchmarks (scripts that print figures; never timed tests): a quick CPU run by default,
# every size with FULL=1, the GPU set with GPU=1 (on a GPU host, installed with
# EXTRAS=train,export,serve,dev,bench). Writes docs/bench/*.json and .png, docs/benchmarks.md.
bench: demo
	$(BIN)/python -m bench --model $(DEMO_DIR)/bundle $(if $(FULL),--full,) $(if $(GPU),--gpu,)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
