"""eGeMAPSv02 low-level descriptors (openSMILE), cached on disk.

Each utterance becomes a float32 matrix [frames, 25], one row per 10 ms frame. The cache is
content-addressed: the key is the sha256 of `FEATURE_VERSION` and the audio file's sha256,
so a renamed file still hits, and an edited file or a new openSMILE release misses.
Knows nothing of teachers or labels.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import opensmile
from tqdm import tqdm

from emodistill.audio import SAMPLE_RATE_HZ, load_audio
from emodistill.bundle import sha256_of

EGEMAPS_LLD_COUNT = 25
FRAME_HOP_S = 0.01
# Part of every cache key: bump the trailing number when extraction here changes.
FEATURE_VERSION = f"eGeMAPSv02-LLD/opensmile-{opensmile.__version__}/16kHz-mono/1"


def default_cache_dir() -> Path:
    """`$EMODISTILL_CACHE/egemaps`, else `$XDG_CACHE_HOME/emodistill/egemaps` (~/.cache)."""
    if os.environ.get("EMODISTILL_CACHE"):
        return Path(os.environ["EMODISTILL_CACHE"]) / "egemaps"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "emodistill" / "egemaps"


_SMILE: opensmile.Smile | None = None


def _smile() -> opensmile.Smile:
    global _SMILE  # one openSMILE instance per process: building it costs ~50 ms
    if _SMILE is None:
        _SMILE = opensmile.Smile(
            feature_set=opensmile.FeatureSet.eGeMAPSv02,
            feature_level=opensmile.FeatureLevel.LowLevelDescriptors,
        )
    return _SMILE


def feature_names() -> list[str]:
    return list(_smile().feature_names)


def extract_lld(samples: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """float32 [samples] -> float32 [frames, 25] eGeMAPSv02 LLDs (no cache)."""
    values = _smile().process_signal(samples, sample_rate_hz).to_numpy(dtype=np.float32)
    if values.ndim != 2 or values.shape[1] != EGEMAPS_LLD_COUNT:
        raise RuntimeError(f"openSMILE returned {values.shape}, expected [frames, 25]")
    return values


def cache_key(audio_path: Path) -> str:
    return hashlib.sha256(f"{FEATURE_VERSION}\n{sha256_of(audio_path)}".encode()).hexdigest()


class EgemapsCache:
    """LLD matrices on disk, one `.npy` per key under `root/<key[:2]>/`."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else default_cache_dir()

    def _file(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def get(self, audio_path: Path) -> np.ndarray | None:
        file = self._file(cache_key(audio_path))
        return np.load(file) if file.is_file() else None

    def put(self, audio_path: Path, lld: np.ndarray) -> None:
        file = self._file(cache_key(audio_path))
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(f".{os.getpid()}.tmp")
        with tmp.open("wb") as f:
            np.save(f, lld)
        tmp.replace(file)  # atomic: a concurrent reader never sees half a file

    def load_or_extract(self, audio_path: Path) -> tuple[np.ndarray, bool]:
        """(LLD [frames, 25], whether it came from the cache)."""
        cached = self.get(audio_path)
        if cached is not None:
            return cached, True
        lld = extract_lld(load_audio(audio_path))
        self.put(audio_path, lld)
        return lld, False


@dataclass(frozen=True)
class ExtractionStats:
    utterances: int
    cache_hits: int
    audio_s: float
    wall_s: float

    @property
    def audio_s_per_s(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s > 0 else float("inf")

    def __str__(self) -> str:
        return (
            f"eGeMAPS LLDs for {self.utterances} utterances ({self.audio_s:.1f} audio-s, "
            f"{self.cache_hits} from cache) in {self.wall_s:.2f} s: "
            f"{self.audio_s_per_s:.1f} audio-seconds per second"
        )


def _extract_one(args: tuple[str, str]) -> tuple[bool, int]:
    path, root = args
    lld, hit = EgemapsCache(Path(root)).load_or_extract(Path(path))
    return hit, lld.shape[0]


def extract_all(
    paths: Sequence[str | Path],
    cache: EgemapsCache,
    workers: int | None = None,
    progress: bool = True,
) -> ExtractionStats:
    """Fill the cache for every path (in parallel processes); report the extraction rate.

    Audio-seconds are counted from LLD frames (10 ms each), so hits cost no decoding.
    """
    workers = workers or min(len(paths), os.cpu_count() or 1) or 1
    jobs = [(str(p), str(cache.root)) for p in paths]
    start = time.perf_counter()
    hits = frames = 0
    bar = tqdm(total=len(jobs), desc="eGeMAPS", unit="utt", disable=not progress)
    if workers == 1:
        results = map(_extract_one, jobs)
        for hit, n in results:
            hits, frames = hits + hit, frames + n
            bar.update()
    else:
        # spawn, not fork: a forked child inherits whatever lock another thread held at the
        # fork (seen: the whole test suite, with onnxruntime and HTTP threads alive, hung in
        # this pool's shutdown with both children asleep).
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            for hit, n in pool.map(_extract_one, jobs, chunksize=8):
                hits, frames = hits + hit, frames + n
                bar.update()
    bar.close()
    return ExtractionStats(len(jobs), hits, frames * FRAME_HOP_S, time.perf_counter() - start)
