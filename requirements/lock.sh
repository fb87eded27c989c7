#!/usr/bin/env bash
# Writes the lock files (requirements/*.txt) from pyproject.toml and versions.env: `make lock`.
#
# One lock per way the project is installed, each exact and hashed, so `make install` and the
# images install the same releases every time:
#   dev        make install on a workstation or CI (CPU onnxruntime), any OS, Python >= 3.11
#   dev-gpu    the same with onnxruntime-gpu, for a GPU workstation (make bench GPU=1)
#   train      the training image (train + export extras)
#   serve-cpu  the service image without a GPU
#   serve-gpu  the service image with onnxruntime-gpu[cuda,cudnn] (its CUDA libraries as wheels)
#   gpu-check  make gpu-check on a bare GPU host (its own torch and CUDA wheels; Python 3.12)
# The image locks are for the images' Python (Debian bookworm's 3.11, x86-64 Linux).
#
# torch is left out of dev and train: `make install` installs TORCH_SPEC (versions.env's
# torch==TORCH_VERSION) itself, so one lock serves its CPU build (a workstation, CI, the CPU
# training image) and its CUDA build (the training image). torch pins its own CUDA wheels
# exactly (cuda-toolkit==, nvidia-cudnn-cu13==), so its CUDA build is as reproducible as the
# lock; its plain dependencies (sympy, networkx, ...) are locked here. dev-gpu, for a GPU
# workstation only, locks torch's CUDA build with everything else.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source versions.env
uv=${UV:-uv}

image_target=(--python-version 3.11 --python-platform x86_64-manylinux_2_28)
any_target=(--universal --python-version 3.11)

# What the torch wheel brings for CUDA: resolved, then excluded from the locks.
torch_cuda=$(echo "torch==$TORCH_VERSION" | "$uv" pip compile - "${image_target[@]}" --quiet \
    --no-header --no-annotate | sed -n 's/^\(cuda-[a-z-]*\|nvidia-[a-z0-9-]*\|triton\)==.*/\1/p')
exclude=(--no-emit-package torch)
for name in $torch_cuda; do exclude+=(--no-emit-package "$name"); done

# The pins that steer each resolution, written from versions.env into requirements/in/ (kept
# in the repository, so the locks' "via" notes name them and a refresh changes nothing else).
mkdir -p requirements/in
note="# Written by requirements/lock.sh from versions.env; edit versions.env instead."
torch_pin=requirements/in/torch.in
ort_cpu=requirements/in/onnxruntime-cpu.in
ort_gpu=requirements/in/onnxruntime-gpu.in
build_pins=requirements/in/build.in
# torch's exact version steers its dependencies' resolution.
printf '%s\ntorch==%s\n' "$note" "$TORCH_VERSION" >"$torch_pin"
printf '%s\nonnxruntime==%s\n' "$note" "$ONNXRUNTIME_VERSION" >"$ort_cpu"
# onnxruntime-gpu asks for CUDA ~=13.0, which would take the newest 13.x libraries; the
# cuda-toolkit metapackage holds them to CUDA_VERSION's release, the one torch is built on.
printf '%s\nonnxruntime-gpu==%s\ncuda-toolkit[cublas,cudart,cufft,curand,nvjitlink,nvrtc]==%s.*\n' \
    "$note" "$ONNXRUNTIME_VERSION" "$CUDA_VERSION" >"$ort_gpu"
# What builds the project itself: make install builds it without isolation, from the lock.
printf '%s\nsetuptools>=69\nwheel\n' "$note" >"$build_pins"

compile() {  # compile NAME cpu|gpu TORCH(with|without|none) TARGET... -- EXTRA...
    local name=$1 build=$2 torch=$3; shift 3
    local args=()
    while [ "$1" != "--" ]; do args+=("$1"); shift; done
    shift
    for extra in "$@"; do args+=(--extra "$extra"); done
    local ort_pin=$ort_cpu
    [ "$build" = gpu ] && ort_pin=$ort_gpu
    local inputs=(pyproject.toml "$ort_pin" "$build_pins")
    case $torch in
        with) inputs+=("$torch_pin") ;;
        without) inputs+=("$torch_pin"); args+=("${exclude[@]}") ;;
    esac
    echo "requirements/$name.txt"
    "$uv" pip compile "${inputs[@]}" "${args[@]}" --generate-hashes --quiet \
        --custom-compile-command "make lock" -o "requirements/$name.txt"
}

compile dev cpu without "${any_target[@]}" -- train export serve cpu dev bench bulk ray
compile dev-gpu gpu with "${image_target[@]}" -- train export serve gpu dev bench bulk ray
compile train cpu without "${image_target[@]}" -- train export cpu
compile serve-cpu cpu none "${image_target[@]}" -- serve cpu
compile serve-gpu gpu none "${image_target[@]}" -- serve gpu
# The GPU checklist on a bare GPU host whose PyTorch is a CUDA 13 build: everything but torch
# and its CUDA wheels (which onnxruntime-gpu then shares), for that host's Python.
compile gpu-check gpu without --python-version "${GPU_PYTHON_VERSION:-3.12}" \
    --python-platform x86_64-manylinux_2_28 -- train export serve gpu bench
