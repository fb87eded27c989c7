"""A live stream's session: audio frames in, events out, over the one pipeline.

    session = LiveSession(pipeline, queue, StreamConfig(sample_rate_hz=16000))
    await session.push(frame_bytes)          # decoded, resampled, segmented; spans scored
    await session.finish("end")              # the rest, then session.ended
    async for event in session.events(): ... # in order: utterance.start, interim, ...

The segmenter (emodistill.live_segments) finds the offline plan's spans as audio arrives; each
span goes to the model through a `Queue` (the service's batcher or model process, so every
stream shares batches; or `BackendQueue`, a synchronous backend in a thread, for
`load(bundle).stream()`), and its event is built by `pipeline.finish`, the code that builds
`/predict`'s segments and aggregate: `utterance.end` events are `/predict`'s segments and
`session.ended` its answer on the same audio. Scoring runs concurrently with reading; at most
`max_outstanding` events wait to be taken, then `push` waits (the caller stops reading, and a
fast client is paced by TCP). Knows nothing of WebSockets or HTTP.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from typing import Annotated, Any, Literal

import numpy as np
import soxr
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from emodistill.errors import BadSamplesError
from emodistill.live_segments import LiveSegmenter, Step
from emodistill.options import InferenceOptions
from emodistill.pipeline import Backend, Pipeline, Prepared, Queue
from emodistill.prediction import (
    DIMENSIONS_FIELD,
    LABEL_FIELD,
    PROBABILITIES_FIELD,
    Dimensions,
    ModelCard,
    OmitsAbsentOutputs,
    Prediction,
)
from emodistill.segments import ClipPlan, SpeechDetector

Encoding = Literal["pcm_s16le", "f32le"]
SAMPLE_BYTES: dict[str, int] = {"pcm_s16le": 2, "f32le": 4}


class StreamConfig(BaseModel):
    """The client's first message. Segmentation fields left out take the server's values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["config"] = "config"
    sample_rate_hz: int = Field(16_000, ge=8_000, le=48_000)
    encoding: Encoding = "pcm_s16le"
    interim_ms: float | None = Field(
        None, ge=0, description="Interim estimate every this many ms of speech; 0: none."
    )
    segmentation: Literal["speech", "windows"] | None = None
    min_segment_s: float | None = Field(None, gt=0)
    max_segment_s: float | None = Field(None, gt=0)
    window_s: float | None = Field(None, gt=0)
    hop_s: float | None = Field(None, gt=0)

    def segment_fields(self) -> dict[str, Any]:
        names = ("segmentation", "min_segment_s", "max_segment_s", "window_s", "hop_s")
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}


# --- events ----------------------------------------------------------------------------------


class SessionStarted(BaseModel):
    type: Literal["session.started"] = "session.started"
    model: ModelCard
    config: StreamConfig
    limits: dict[str, float]


class UtteranceStart(BaseModel):
    type: Literal["utterance.start"] = "utterance.start"
    start_s: float


class Interim(OmitsAbsentOutputs):
    type: Literal["interim"] = "interim"
    start_s: float
    end_s: float
    label: str | None = LABEL_FIELD
    probabilities: dict[str, float] | None = PROBABILITIES_FIELD
    dimensions: Dimensions | None = DIMENSIONS_FIELD


class UtteranceEnd(OmitsAbsentOutputs):
    """One segment of the offline answer (`/predict`'s `segments[i]`), and which utterance
    it is of (a long one is several windows)."""

    type: Literal["utterance.end"] = "utterance.end"
    utterance: int
    start_s: float
    end_s: float
    label: str | None = LABEL_FIELD
    probabilities: dict[str, float] | None = PROBABILITIES_FIELD
    dimensions: Dimensions | None = DIMENSIONS_FIELD
    calibrated: bool
    delay_s: float = Field(
        description="From the arrival of the span's last sample to this event: the hold "
        "until no later audio can change the span, and the scoring."
    )
    processing_s: float = Field(
        description="From the arrival of the audio that settled the span to this event: "
        "the service's own delay (queue and model), which grows with its load."
    )


class SessionEnded(BaseModel):
    """`/predict`'s answer on the stream's audio; null when no speech was heard in a stream
    longer than max_segment_s (offline scores such audio in windows; a stream never scores
    silence)."""

    type: Literal["session.ended"] = "session.ended"
    reason: str
    duration_s: float
    prediction: Prediction | None


class StreamError(BaseModel):
    type: Literal["error"] = "error"
    code: str
    reason: str
    close_code: int


Event = Annotated[
    SessionStarted | UtteranceStart | Interim | UtteranceEnd | SessionEnded | StreamError,
    Field(discriminator="type"),
]
EVENT = TypeAdapter(Event)


class BackendQueue:
    """A synchronous backend as a `Queue`: each submission batched by the pipeline's rule
    and run in a thread, off the event loop (the in-process `load(bundle).stream()`)."""

    def __init__(self, pipeline: Pipeline, backend: Backend) -> None:
        self.pipeline, self.backend = pipeline, backend
        self.lock = asyncio.Lock()  # one model call at a time, as the batcher runs it

    async def submit_many(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        async with self.lock:
            return await asyncio.to_thread(self.pipeline.infer, clips, self.backend)


class Frames:
    """Bytes of one encoding and rate -> float32 mono at the model's rate, across frames
    (a sample split between frames, the resampler's state)."""

    def __init__(self, encoding: Encoding, rate_hz: int, model_rate_hz: int) -> None:
        self.encoding, self.width = encoding, SAMPLE_BYTES[encoding]
        self.rest = b""
        self.resampler = (
            None
            if rate_hz == model_rate_hz
            else soxr.ResampleStream(rate_hz, model_rate_hz, 1, np.float32, "HQ")
        )

    def decode(self, data: bytes, last: bool = False) -> np.ndarray:
        data = self.rest + data
        whole = len(data) - len(data) % self.width
        self.rest = data[whole:]
        if self.encoding == "pcm_s16le":
            x = np.frombuffer(data[:whole], "<i2").astype(np.float32) / 32768.0
        else:
            x = np.frombuffer(data[:whole], "<f4").astype(np.float32)
            if not np.isfinite(x).all() or (x.size and float(np.abs(x).max()) > 1e3):
                raise BadSamplesError("f32le samples must be finite, within ±1000")
        if self.resampler is not None:
            x = self.resampler.resample_chunk(x, last=last)
        return np.ascontiguousarray(x, np.float32)


class LiveSession:
    """One stream through the pipeline; see the module doc."""

    def __init__(
        self,
        pipeline: Pipeline,
        queue: Queue,
        config: StreamConfig,
        default_interim_ms: float = 1000.0,
        detector: SpeechDetector | None = None,
        executor: Executor | None = None,
        max_outstanding: int = 8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pipeline, self.queue, self.config = pipeline, queue, config
        # Checked again as a whole (hop within window, segment bounds): a ValidationError.
        options = InferenceOptions(**{**pipeline.options.model_dump(), **config.segment_fields()})
        self.options = options
        rate = pipeline.rate_hz
        interim_ms = default_interim_ms if config.interim_ms is None else config.interim_ms
        self.segmenter = LiveSegmenter(
            options.segment_options, round(interim_ms / 1000 * rate), detector
        )
        self.frames = Frames(config.encoding, config.sample_rate_hz, rate)
        self.executor, self.clock = executor, clock
        self.out: asyncio.Queue[Awaitable[BaseModel | None] | None] = asyncio.Queue()
        self.slots = asyncio.Semaphore(max_outstanding)
        self.arrivals: deque[tuple[int, float]] = deque()  # (samples so far, when)
        self.spans: list[tuple[int, int]] = []  # every utterance span handed out, in order
        self.logits: list[asyncio.Future[np.ndarray]] = []
        self.interim_busy = False
        self.ended = False
        # Metrics hooks: (utterance-end delay in s) and (interim) per event.
        self.on_utterance: Callable[[float], None] = lambda _: None
        self.on_interim: Callable[[], None] = lambda: None

    def started(self, limits: dict[str, float]) -> SessionStarted:
        return SessionStarted(model=self.pipeline.card, config=self.config, limits=limits)

    @property
    def duration_s(self) -> float:
        return self.segmenter.n / self.pipeline.rate_hz

    # --- in ------------------------------------------------------------------------------------

    async def push(self, data: bytes) -> None:
        """The next frame's bytes; waits while `max_outstanding` events are untaken."""
        samples = self.frames.decode(data)
        self.arrivals.append((self.segmenter.n + len(samples), self.clock()))
        await self._schedule(await self._segment(self.segmenter.push, samples))

    async def finish(self, reason: str) -> None:
        """No more audio: the spans left, then session.ended; then the events end."""
        if self.ended:
            return
        self.ended = True
        tail = self.frames.decode(b"", last=True)
        steps = await self._segment(self.segmenter.push, tail) if tail.size else []
        steps += await self._segment(lambda _: self.segmenter.finish(), None)
        self.arrivals.append((self.segmenter.n, self.clock()))
        await self._schedule(steps)
        whole = [s for s in steps if s.kind == "whole"]
        ended = self._ended(reason, self._score(whole[0].samples) if whole else None)
        await self.out.put(asyncio.ensure_future(ended))
        await self.out.put(None)

    async def fail(self, err: BaseException) -> None:
        """The audio cannot go on (a bad frame, the feeder failed): `events` raises `err`
        after the events before it."""
        if self.ended:
            return
        self.ended = True

        async def raise_it() -> None:
            raise err

        await self.out.put(asyncio.ensure_future(raise_it()))
        await self.out.put(None)

    async def _segment(self, work: Callable[[Any], list[Step]], arg: Any) -> list[Step]:
        """Speech detection off the event loop (about 0.1 ms per 32 ms chunk)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, work, arg)

    async def _schedule(self, steps: list[Step]) -> None:
        for step in steps:
            item: Awaitable[BaseModel | None] | None = None
            if step.kind == "speech":
                item = _ready(UtteranceStart(start_s=step.start / self.pipeline.rate_hz))
            elif step.kind == "utterance":
                logits = self._score(step.samples)
                self.spans.append((step.start, step.end))
                self.logits.append(logits)
                # When its last sample, and the audio that settled it, arrived: kept now, as
                # arrival times are forgotten with the samples.
                arrived = (self._arrived(step.end), self._arrived(step.heard))
                item = self._utterance(step, logits, *arrived)
            elif step.kind == "interim" and not self.interim_busy:  # none while one waits
                self.interim_busy = True
                item = self._interim(step)
            if item is not None:
                await self.slots.acquire()  # released when the event is taken
                await self.out.put(asyncio.ensure_future(item))
        self._forget_arrivals()

    # --- out -----------------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[BaseModel]:
        """Every event in order, session.ended last; a scoring failure raises here."""
        while (item := await self.out.get()) is not None:
            event = await item
            if not isinstance(event, SessionEnded):
                self.slots.release()
            if event is not None:
                yield event

    def _score(self, clip: np.ndarray) -> asyncio.Future[np.ndarray]:
        async def one() -> np.ndarray:
            return (await self.queue.submit_many([clip]))[0]

        return asyncio.ensure_future(one())

    async def _utterance(
        self, step: Step, logits: Awaitable[np.ndarray], ended_at: float, heard_at: float
    ) -> UtteranceEnd:
        segment = self._finished([(step.start, step.end)], [await logits], "speech").segments
        assert segment is not None
        now = self.clock()
        delay_s = now - ended_at
        self.on_utterance(delay_s)
        return UtteranceEnd(
            utterance=step.utterance,
            calibrated=self.pipeline.card.calibrated,
            delay_s=delay_s,
            processing_s=now - heard_at,
            **segment[0].model_dump(),
        )

    async def _interim(self, step: Step) -> Interim:
        try:
            logits = await self._score(step.samples)
        finally:
            self.interim_busy = False
        answer = self._finished([(step.start, step.end)], [logits], "speech")
        self.on_interim()
        rate = self.pipeline.rate_hz
        return Interim(
            start_s=step.start / rate,
            end_s=step.end / rate,
            label=answer.label,
            probabilities=answer.probabilities,
            dimensions=answer.dimensions,
        )

    async def _ended(self, reason: str, whole: Awaitable[np.ndarray] | None) -> SessionEnded:
        """`/predict`'s answer on the same audio: the whole stream when it is short, else
        every span's logits combined as `pipeline.finish` combines them."""
        if whole is not None:
            prediction: Prediction | None = self._finished([(0, self.segmenter.n)], [await whole])
        elif self.spans:
            logits = [await x for x in self.logits]
            if self.segmenter.speech:
                speech_s = self.segmenter.speech_s
                prediction = self._finished(self.spans, logits, "speech", speech_s)
            else:
                prediction = self._finished(self.spans, logits, "windows")
        else:
            prediction = None
        return SessionEnded(reason=reason, duration_s=self.duration_s, prediction=prediction)

    def _finished(
        self,
        spans: list[tuple[int, int]],
        logits: list[np.ndarray],
        mode: Literal["whole", "speech", "windows"] = "whole",
        speech_s: float | None = None,
    ) -> Prediction:
        plan = ClipPlan(spans, mode, speech_s)
        prepared = Prepared(np.zeros(0, np.float32), self.duration_s, plan)
        return self.pipeline.finish([prepared], logits)[0]

    # --- when each sample arrived (the utterance-end delay) ------------------------------------

    def _arrived(self, sample: int) -> float:
        for count, when in self.arrivals:
            if count >= sample:
                return when
        return self.clock()

    def _forget_arrivals(self) -> None:
        """Arrival times are needed back to the earliest sample a span can still end at."""
        keep = self.segmenter.buffer_start
        while self.arrivals and self.arrivals[0][0] < keep:
            self.arrivals.popleft()


async def _ready(event: BaseModel) -> BaseModel:
    return event
