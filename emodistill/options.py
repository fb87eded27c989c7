"""How audio becomes model calls: the one home of every inference option and its default.

Segmentation (speech or windows, segment and window lengths), batch limits and audio limits,
for every front end: `emodistill.load(bundle, options)` takes an `InferenceOptions`; the
service's `Settings` inherits these fields, so each is also a flag and an EMODISTILL_
variable there with the same name and default. Torch-free; knows nothing of HTTP.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from emodistill.audio_input import AudioLimits
from emodistill.segments import SegmentOptions


class InferenceOptions(BaseModel):
    """Each field's description says its trade-off. Unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    segmentation: Literal["speech", "windows"] = Field(
        "speech",
        description="How audio longer than max_segment_s is cut: 'speech' into utterances at "
        "pauses (voice activity detection; silence is not scored), 'windows' into fixed "
        "windows whatever is said.",
    )
    # IEMOCAP utterances are mostly under 10 s: clips up to that are scored whole, as the
    # model was trained; a detected utterance is at least 1 s where a neighbour allows.
    min_segment_s: float = Field(
        1.0, gt=0, description="A shorter utterance joins its nearer neighbour."
    )
    max_segment_s: float = Field(
        10.0,
        gt=0,
        description="Clips up to this are scored whole; a longer stretch of speech in windows.",
    )
    window_s: float = Field(
        10.0,
        gt=0,
        description="Windows where audio is cut without speech detection (and inside a "
        "stretch of speech longer than max_segment_s); IEMOCAP utterances are mostly under 10 s.",
    )
    hop_s: float = Field(5.0, gt=0, description="Step between windows; < window_s overlaps.")
    max_batch_size: int = Field(
        32,
        ge=1,
        description="Most clips per model call. Larger: more throughput under load, "
        "more latency for the clips that wait for a long one.",
    )
    # 96 s lets a full batch of 3 s clips (32, as Triton and LitServe batch) through; 64 s cut
    # it to 21, and the service lost to both at 256 clients (issue 26). Measured peak of the
    # engine's process on HuBERT-base, fp32 CPU: 1.9 GB at 64 s, 2.8 GB at 96 s
    # (bench/batch_memory.py, docs/benchmarks.md).
    max_batch_audio_s: float = Field(
        96.0,
        gt=0,
        description="Padded audio per batch (longest clip × clips), in seconds: "
        "bounds memory and the cost of padding, as text-embeddings-inference bounds tokens. "
        "HuBERT-base on the CPU needs about 23 MB per second of it at the peak; lower on a "
        "small host.",
    )
    # HuBERT-base on 2 CPU cores, the Python API on 12 clips of 1-6 s (issue 26, fifth round):
    # 1.79 files/s unbounded, 2.81 at 0.1, 2.84 at 0.05, 3.01 one clip per call; the tiny demo
    # on 48 clips: 109, 138, 141 and 134 files/s. Equal lengths batch as before. Left to this
    # default, a model that holds the CPU's cores gets 0 (emodistill/recognizer.py's
    # padding_for; the service: service/model.py's resolve_autos).
    max_batch_padding: float = Field(
        0.1,
        ge=0,
        description="Padding a batch may add, as a fraction of its clips' own audio: a clip "
        "joins a batch only while longest × clips stays within (1 + this) × their total. "
        "Padding is computed like audio; 0 batches equal lengths only.",
    )
    max_audio_s: float = Field(
        600.0,
        gt=0,
        description="Longest audio accepted (413 beyond). Long audio is scored "
        "window by window, so this bounds work, not memory.",
    )
    # 57.6 M is 600 s of 48 kHz stereo; a 252 KB FLAC of 599 s × 8 channels × 192 kHz
    # (920 M) is refused instead of decoding for seconds into ~700 MB.
    max_decoded_samples: int = Field(
        57_600_000,
        ge=1,
        description="Decoding work per upload: frames × channels, from the header, before "
        "decoding (413 beyond). The default is 600 s of 48 kHz stereo; a small compressed "
        "file of many channels at a high rate would otherwise decode to gigabytes.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> InferenceOptions:
        _ = self.segment_options  # its checks: hop_s within window_s, the segment bounds
        return self

    @property
    def segment_options(self) -> SegmentOptions:
        return SegmentOptions(
            self.segmentation, self.window_s, self.hop_s, self.min_segment_s, self.max_segment_s
        )

    def audio_limits(self, sample_rate_hz: int) -> AudioLimits:
        """What the decoder accepts, resampling to the model's `sample_rate_hz`."""
        return AudioLimits(
            sample_rate_hz=sample_rate_hz,
            max_duration_s=self.max_audio_s,
            max_decoded_samples=self.max_decoded_samples,
        )

    def max_batch_samples(self, sample_rate_hz: int) -> int:
        """The padded-audio budget of one model call, in samples at the model's rate."""
        return int(self.max_batch_audio_s * sample_rate_hz)

    def inference_options(self) -> InferenceOptions:
        """These fields alone (also on a subclass, such as the service's Settings)."""
        return InferenceOptions(**{k: getattr(self, k) for k in InferenceOptions.model_fields})
