"""Transcripts for the linguistic teacher where a corpus has none: ASR at preparation time.

`transcribe_rows` fills the empty `text` of manifest rows with an automatic speech
recognition model run through transformers' pipeline (Whisper by default). Every transcript is
appended to a cache as soon as it is made, keyed by the audio's sha256 and the model id, so an
interrupted preparation resumes where it stopped and a second corpus holding the same files
costs nothing. Only preparation uses it: the served model needs no ASR.

Knows nothing of folds, labels or training.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from emodistill.audio import SAMPLE_RATE_HZ, load_audio

from .manifest import Utterance
from .reading import slug


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "emodistill" / "transcripts"


def audio_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class TranscriptCache:
    """One JSON-lines file per model: {"sha256": ..., "text": ...} per transcribed file."""

    def __init__(self, model_id: str, root: Path | None = None):
        model_key = hashlib.sha256(model_id.encode()).hexdigest()[:12]
        self.path = (root or default_cache_dir()) / f"{slug(model_id)[-60:]}-{model_key}.jsonl"
        self.texts: dict[str, str] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short when a run was killed: made again
                self.texts[record["sha256"]] = record["text"]

    def add(self, sha256: str, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"sha256": sha256, "text": text}, ensure_ascii=False) + "\n")
        self.texts[sha256] = text


Recognize = Callable[[Any], Any]  # transformers' ASR pipeline, or a test's stand-in


# Whisper hears 30 s at a time; longer files (a folder tree may hold any) are cut into chunks.
CHUNK_S = 30


def asr_pipeline(model_id: str, device: str | None = None) -> Recognize:
    from transformers import pipeline

    return pipeline(
        "automatic-speech-recognition",
        model=model_id,
        device=device or "cpu",
        chunk_length_s=CHUNK_S,
    )


def transcribe_rows(
    rows: Sequence[Utterance],
    model_id: str,
    progress: bool = True,
    log: Callable[[str], object] = print,
    cache_dir: Path | None = None,
    recognize: Recognize | None = None,
) -> list[Utterance]:
    """`rows` with every empty text written by the ASR model (rows with text are kept)."""
    cache = TranscriptCache(model_id, cache_dir)
    pending = [i for i, r in enumerate(rows) if not r.text.strip()]
    hashes = {i: audio_sha256(Path(rows[i].path)) for i in pending}
    todo = [i for i in pending if hashes[i] not in cache.texts]
    log(
        f"transcribing {len(todo)} of {len(pending)} rows without text with {model_id} "
        f"({len(pending) - len(todo)} cached in {cache.path})"
    )
    if todo and recognize is None:
        recognize = asr_pipeline(model_id)
    for i in tqdm(todo, desc="transcribe", disable=not progress):
        samples = load_audio(rows[i].path, SAMPLE_RATE_HZ)
        result = recognize({"raw": samples, "sampling_rate": SAMPLE_RATE_HZ})  # type: ignore[misc]
        cache.add(hashes[i], str(result["text"]).strip())
    out = list(rows)
    for i in pending:
        out[i] = replace(rows[i], text=cache.texts[hashes[i]])
    return out
