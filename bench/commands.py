"""What `python -m bench` runs: each benchmark's script and arguments per set (quick CPU, full
CPU, GPU), and the exact command line of each. Knows nothing of how a benchmark measures or
how its figures are reported.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

DOCS = Path("docs")  # the report and its JSON, relative to the checkout
OUT = DOCS / "bench"
BASE_BUNDLE = "models/bench/base_bundle"

# name: (script, its arguments). "{model}" is the demo bundle given to --model.
# The demo bundle in one process (the CPU's default), and served by two HTTP worker processes
# and the model process (service/processes.py).
SERVICE_ONE = "--model {model} --service-args '--workers 1'"
SERVICE_WORKERS = "--model {model} --service-args '--workers 2 --device cpu'"
Settings = dict[str, tuple[str, str]]
CPU_PEAK = f"--bundle {BASE_BUNDLE}"
# The peers (make bench-peers: their own venv). HuBERT-base answers ~3 clips/s here: fewer
# clients and requests for it than for the demo bundle; it runs again on clips of mixed lengths.
PEERS = (
    f"--model {{model}} --base {BASE_BUNDLE} --clients 16,64,256 --base-clients 16,64 "
    "--base-requests 128 --base-mixed"
)
ENGINE_CPU = "--devices cpu --preset"
BATCH_MEMORY = f"--bundle {{model}} --bundle {BASE_BUNDLE} --caps-s 64,96,128 --clips-s 3,10,30"
QUICK: Settings = {
    "engine": ("engine.py", f"{ENGINE_CPU} base --batch-sizes 1,8 --lengths-s 2"),
    "engine_tiny": ("engine.py", f"{ENGINE_CPU} tiny --batch-sizes 1,8,32 --lengths-s 2"),
    "cascade": ("cascade.py", "--lengths-s 2,6,12 --asr base --repeats 2"),
    "service": ("service_load.py", SERVICE_ONE + " --requests 150 --repeats 2"),
    "base_bundle": ("base_bundle.py", f"--bundle {BASE_BUNDLE}"),
    "service_base": ("service_load.py", f"--model {BASE_BUNDLE} --requests 64 --repeats 1"),
    "bulk": ("bulk.py", f"--model {{model}} --base {BASE_BUNDLE} --files 30 --long-run-files 300"),
    "decode": ("decode.py", "--seconds 30 --repeats 3"),
    "frontend": ("frontend.py", "--model {model} --requests 400 --repeats 2"),
    "stream": ("stream.py", "--model {model} --levels 8,16,32 --seconds 22"),
    "service_workers": ("service_load.py", SERVICE_WORKERS + " --requests 150 --repeats 2"),
    "cpu_peak": ("cpu_peak.py", CPU_PEAK + " --batch-sizes 1,4 --lengths-s 2,6 --repeats 3"),
    "peers": ("peers.py", PEERS + " --requests 512 --repeats 2"),
    "batch_memory": ("batch_memory.py", BATCH_MEMORY + " --repeats 1"),
}
FULL: Settings = {
    "engine": ("engine.py", f"{ENGINE_CPU} base --batch-sizes 1,8,32 --lengths-s 2,6"),
    "engine_tiny": (
        "engine.py",
        f"{ENGINE_CPU} tiny --batch-sizes 1,8,32 --lengths-s 2,6 --repeats 5",
    ),
    "cascade": ("cascade.py", "--lengths-s 2,6,12 --asr base,small --repeats 3"),
    "service": ("service_load.py", SERVICE_ONE + " --requests 500 --repeats 3"),
    "base_bundle": ("base_bundle.py", f"--bundle {BASE_BUNDLE}"),
    "service_base": ("service_load.py", f"--model {BASE_BUNDLE} --requests 128 --repeats 2"),
    "bulk": ("bulk.py", f"--model {{model}} --base {BASE_BUNDLE}"),
    "decode": ("decode.py", "--seconds 30 --repeats 5"),
    "frontend": ("frontend.py", "--model {model} --requests 600 --repeats 3"),
    "stream": ("stream.py", "--model {model} --levels 8,16,32,48,64 --seconds 60"),
    "service_workers": ("service_load.py", SERVICE_WORKERS + " --requests 500 --repeats 3"),
    "cpu_peak": ("cpu_peak.py", CPU_PEAK + " --batch-sizes 1,4,8 --lengths-s 2,6 --repeats 5"),
    "peers": ("peers.py", PEERS + " --requests 1024 --repeats 3"),
    "batch_memory": ("batch_memory.py", BATCH_MEMORY + " --repeats 3"),
    # About 13 minutes on 2 cores: HuBERT-base embeddings of the demo corpus, an export.
    "head_trained_base": ("head_trained_base.py", "--corpus models/demo/corpus"),
}
# The GPU checklist (make gpu-check): engines at batch 1-64 over 2 s and 8 s clips, eager and
# compiled; the base bundle's CUDA parity; the service on CUDA; one training step of the
# base student in bf16 at the paper's per-GPU batch (128 / 4) and crop, and HuBERT-large's.
ENGINE_GPU = "--devices cuda --batch-sizes 1,8,32,64 --lengths-s 2,8 --repeats 10 --preset"
TRAIN_GPU = "--bf16 --batch 32 --crop-s 8 --preset"
GPU: Settings = {
    "engine_gpu": ("engine.py", f"{ENGINE_GPU} base --compile"),
    "engine_tiny_gpu": ("engine.py", f"{ENGINE_GPU} tiny"),
    "base_bundle_gpu": ("base_bundle.py", f"--bundle {BASE_BUNDLE}"),
    "service_gpu": (
        "service_load.py",
        f"--model {BASE_BUNDLE} --requests 500 --repeats 3 --service-args '--device cuda'",
    ),
    "train_gpu": ("train_probe.py", f"{TRAIN_GPU} base --steps 20"),
    "train_large_gpu": ("train_probe.py", f"{TRAIN_GPU} large --steps 3"),
}
SERVICE_LEVELS = "--concurrency 1,4,16,64 --clip-s 2"


def command_for(name: str, script: str, args: str, model: str) -> list[str]:
    if script == "service_load.py":
        args += " " + SERVICE_LEVELS
    words = shlex.split(args.replace("{model}", model))
    module = f"bench.{Path(script).stem}"  # as a module: the scripts share bench/ code
    return [sys.executable, "-m", module, *words, "--out", str(OUT / f"{name}.json")]


def shown(command: list[str]) -> str:
    """The command as a reader would type it."""
    return " ".join(["python", *(shlex.quote(a) for a in command[1:])])
