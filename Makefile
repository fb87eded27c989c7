# emodistill: the two commands a newcomer needs are `make serve` and `make test`.
# Every target installs what it needs first.

PYTHON ?= python3
VENV ?= .venv
# The GPU stack's versions (CUDA, driver, torch, onnxruntime): one home, read here and by `make lock`.
include versions.env
# Which lock of requirements/ to install (requirements/lock.sh says what each is for): dev here
# and in CI, dev-gpu on a GPU workstation; the images name their own.
LOCK ?= dev
# The torch requirement, installed after the lock (which leaves torch out). `torch==X` takes the
# local CPU build where pip is capped to it (this workplace, CI) and PyPI's CUDA build elsewhere;
# where no CUDA is wanted, point pip at a CPU build for this step alone:
# TORCH_PIP_ARGS='--index-url https://download.pytorch.org/whl/cpu' (or --find-links DIR).
# Empty (TORCH_SPEC=) installs no torch: the service image.
TORCH_SPEC ?= torch==$(TORCH_VERSION)
TORCH_PIP_ARGS ?=
# `make demo CORPUS=cremad ROOT=/path/to/CREMA-D` (or emodb, ravdess): the same tiny student
# trained on that real acted corpus instead of the synthetic one (docs/corpora.md).
CORPUS ?=
ROOT ?=
DEMO_DIR ?= models/demo$(if $(CORPUS),-$(CORPUS),)
# The local stand-in for debian:bookworm-slim that make compose-test builds and uses.
BASE_IMAGE_LOCAL ?= emodistill/bookworm-slim:local

BIN := $(VENV)/bin
DEPS := $(VENV)/.deps-$(LOCK)
STAMP := $(VENV)/.installed-$(LOCK)

.PHONY: install deps lock lint test demo serve bench bench-peers images compose-test gpu-check gpu-plan clean

install: $(STAMP)
deps: $(DEPS)

# Dependencies alone (the images cache this layer apart from the code): exactly the lock,
# hashes checked, then torch.
$(DEPS): requirements/$(LOCK).txt versions.env
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements/$(LOCK).txt
	test -z "$(TORCH_SPEC)" || $(BIN)/python -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	touch $@

# The project itself on top, built from the lock's setuptools; `pip check` proves the set whole.
$(STAMP): $(DEPS) pyproject.toml
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $@

# Refreshes every lock from pyproject.toml and versions.env (needs uv: pip install uv).
lock:
	UV="$$(command -v uv || echo $(BIN)/uv)" bash requirements/lock.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy emodistill service export student training bench

test: install lint
	$(BIN)/python -m pytest

# The demo model: synthetic corpus, both teachers, the tiny student (about 5 minutes on
# 2 CPU cores), then its verified ONNX bundle. Built once; delete $(DEMO_DIR) to rebuild.
# With CORPUS=cremad|emodb|ravdess ROOT=DIR: prepared from that corpus's folder instead, into
# models/demo-$(CORPUS); `make serve CORPUS=... ROOT=...` then serves that one.
demo: install $(DEMO_DIR)/bundle/bundle.json

$(DEMO_DIR)/checkpoint/config.json:
	$(if $(CORPUS),$(if $(ROOT),,$(error CORPUS=$(CORPUS) needs ROOT=/path/to/the/corpus)))
	$(BIN)/python -m training demo --out $(DEMO_DIR) $(if $(CORPUS),--corpus $(CORPUS) --root $(ROOT),)

$(DEMO_DIR)/bundle/bundle.json: $(DEMO_DIR)/checkpoint/config.json
	$(BIN)/python -m export --checkpoint $(DEMO_DIR)/checkpoint --out $(DEMO_DIR)/bundle

# Serves the demo bundle on http://127.0.0.1:8000 (the page at /, the API docs at /docs).
# Settings: flags after ARGS=..., or EMODISTILL_* variables (python -m service --help).
serve: demo
	$(BIN)/python -m service --model $(DEMO_DIR)/bundle $(ARGS)

# Benchmarks (scripts that print figures; never timed tests): a quick CPU run by default,
# every size with FULL=1, the GPU set with GPU=1 (on a GPU host, installed with
# LOCK=dev-gpu). Writes docs/bench/*.json and .png, docs/benchmarks.md.
bench: demo
	$(BIN)/python -m bench --model $(DEMO_DIR)/bundle $(if $(FULL),--full,) $(if $(GPU),--gpu,)

# Ours against LitServe, Ray Serve, Triton (nvidia-pytriton) and transformers' pipeline
# (python -m bench.peers, docs/benchmarks.md section 8): the peers are benchmark-only, so they go
# into their own venv, $(PEERS_VENV): the dev lock, torch, then the `peers` extra (unlocked).
# nvidia-pytriton 0.7.0 pins numpy<2 (and its output tensors come back empty on numpy 2.4), so
# pip moves this venv to numpy 1.26; the lock's pyarrow needs numpy 2 and Ray Serve imports it
# when present, so it is removed here (nothing the peers run reads Parquet).
PEERS_VENV ?= .venv-peers
BASE_BUNDLE ?= models/bench/base_bundle
PEERS_ARGS ?= --base $(BASE_BUNDLE)
bench-peers: demo
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	test -f $(PEERS_VENV)/.installed || ( \
		$(PEERS_VENV)/bin/python -m pip install --quiet --require-hashes --no-deps -r requirements/dev.txt && \
		$(PEERS_VENV)/bin/python -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)" && \
		$(PEERS_VENV)/bin/python -m pip install --quiet --no-build-isolation -e ".[peers]" && \
		$(PEERS_VENV)/bin/python -m pip uninstall --quiet -y pyarrow && \
		touch $(PEERS_VENV)/.installed )
	test -f $(BASE_BUNDLE)/bundle.json || $(BIN)/python -m bench.base_bundle --bundle $(BASE_BUNDLE)
	$(PEERS_VENV)/bin/python -m bench --only peers --model $(DEMO_DIR)/bundle

# The GPU checklist (bench --gpu: engines eager and compiled, CUDA parity, the service on CUDA,
# training steps) on a bare GPU host of our own: PyTorch with CUDA 13 installed, no network, no
# project install (the borrowed host, 64 MiB per command: make gpu-plan, docs/gpu-check.md).
# First, on any machine with network: `make gpu-wheels` (every other wheel, about 500 MB,
# into $(GPU_WHEELS)/); carry the checkout with that folder to the host; there,
# `make gpu-check` writes docs/bench/*_gpu.json and docs/benchmarks.md.
GPU_WHEELS ?= gpu-wheels
GPU_PYTHON ?= python3
GPU_VENV ?= .gpu-venv
GPU_PLATFORMS := $(foreach n,2_17 2_24 2_27 2_28 2_31 2_34 2_35,--platform manylinux_$(n)_x86_64) \
	--platform manylinux2014_x86_64 --platform linux_x86_64 --platform any

# The GPU checklist as the borrowed GPU host runs it (docs/gpu-check.md): fetches what the host
# lacks into .gpu-plan/ (onnxruntime-gpu in parts) and prints the device tool's calls, in order;
# `python -m bench.gpu_plan fold DIR` then folds what they brought back into docs/.
gpu-plan: install
	$(BIN)/python -m bench.gpu_plan

gpu-wheels:
	$(PYTHON) -m pip download --quiet --no-deps --only-binary :all: --implementation cp \
		--python-version 3.12 $(GPU_PLATFORMS) -d $(GPU_WHEELS) -r requirements/gpu-check.txt

gpu-check:
	test -x $(GPU_VENV)/bin/python || $(GPU_PYTHON) -m venv --system-site-packages $(GPU_VENV)
	$(GPU_VENV)/bin/python -m pip install --quiet --no-index --find-links $(GPU_WHEELS) \
		--no-deps -r requirements/gpu-check.txt
	$(GPU_VENV)/bin/python -m pip install --quiet --no-index --no-deps --no-build-isolation -e .
	$(GPU_VENV)/bin/python -m bench --gpu

# The deployment as a user runs it, on this machine (docker/engine.sh installs and starts a
# Docker engine and Compose v2 where missing; docker/base-image.sh builds debian:bookworm-slim
# locally): both images built, the CPU compose stack up from an empty models volume, a real
# request checked against the venv's service, and the GPU image's CUDA libraries checked.
compose-test: install
	bash docker/engine.sh
	bash docker/base-image.sh $(BASE_IMAGE_LOCAL)
	EMODISTILL_COMPOSE_TEST=1 BASE_IMAGE=$(BASE_IMAGE_LOCAL) \
		$(BIN)/python -m pytest -m compose tests/docker/test_deployment.py -v -s -p no:cacheprovider --timeout 3000

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
