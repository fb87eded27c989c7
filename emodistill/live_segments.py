"""Where the utterances of a live stream are, found as its audio arrives: the offline plan,
incrementally.

`LiveSegmenter.push(samples)` runs Silero VAD chunk by chunk (segments.VadRun, its recurrent
state carried across frames of any size), turns probabilities into speech regions with the
offline hysteresis, minimum silence and padding (segments.RegionTracker), and joins them into
utterances by the offline rule (segments.utterances) with windows inside long speech
(segments.windows). It answers `Step`s: speech began, a span to score as an utterance, a
span to score as an interim estimate, the whole stream to score at its end.

Equal to the offline plan (`segments.speech_plan` over the whole recording) because an
utterance is handed out only once no later audio can change it. Whether a short region joins
its previous or its next neighbour depends on what comes next, so the regions are held
(`pending`) until a gap after them is one no merge can cross:
  - both regions beside the gap are at least `min_segment_s` (only a shorter one joins), or
  - the region after the gap ends more than `max_segment_s` after the one before it starts
    (joined, they would not fit),
and for the last region, with its next one not yet heard, the same tests against the least
that any future region can be (the open run of speech, or one that begins now). So a short
utterance that must join its NEXT neighbour waits for the next speech or the end of the
stream, and an utterance followed by silence waits at most until `max_segment_s` after its
start (sooner when the next speech lasts `min_segment_s`). Speech longer than `window_s` is
cut into windows as it goes: a window is handed out once the speech has reached its end.

Two cases differ from offline, on purpose (docs/streaming.md):
  - a stream no longer than `max_segment_s`: offline scores it whole; the segmenter hands out
    its utterances as it finds them (a live display cannot wait) and, at the end, the whole
    stream to score as `/predict` would, which becomes the session's answer;
  - a long chain of short regions each within `max_segment_s` of the next: held regions are
    forced out once they cover `HOLD_LIMIT` × `max_segment_s`, bounding memory (offline, such
    a chain could merge differently across the forced cut).

Memory: the samples from the first held region (or the open speech) on, so at most about
HOLD_LIMIT × max_segment_s, plus the VAD's state. Model-free, torch-free, HTTP-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from emodistill.segments import (
    CHUNK_SAMPLES,
    VAD_RATE_HZ,
    RegionTracker,
    SegmentOptions,
    SpeechDetector,
    default_detector,
    utterances,
    windows,
)

# Held regions are forced out once they span this many max_segment_s (see the module doc).
HOLD_LIMIT = 3


@dataclass(frozen=True)
class Step:
    """What the segmenter found. `kind`: 'speech' (speech began at `start`), 'utterance'
    (score `samples`: one span of the offline plan), 'interim' (score `samples`: the speech
    so far), 'whole' (score `samples`: the whole stream, no longer than max_segment_s).
    `start`, `end`: samples from the stream's start; `utterance`: which utterance a span is
    of (windows of one long utterance share it); `heard`: the samples heard when it was
    settled (its last sample, or the later one that proved no more audio could change it)."""

    kind: Literal["speech", "utterance", "interim", "whole"]
    start: int
    end: int
    samples: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.float32))
    utterance: int = -1
    heard: int = 0


class LiveSegmenter:
    """The offline plan of one stream of float32 mono samples at 16 kHz, found as they arrive.

    `interim_samples`: how often (in samples of speech) to ask for an interim estimate of the
    speech so far (its last `window_s`); 0: never.
    """

    def __init__(
        self,
        options: SegmentOptions,
        interim_samples: int = 0,
        detector: SpeechDetector | None = None,
    ) -> None:
        self.options = options
        self.rate = VAD_RATE_HZ
        self.interim_samples = interim_samples
        self.speech = options.mode == "speech"
        self.vad = (detector or default_detector()).run() if self.speech else None
        self.tracker = RegionTracker()
        self.lo = options.min_segment_s * self.rate  # shorter regions join a neighbour
        self.hi = options.max_segment_s * self.rate  # joined, at most this
        self.window = round(options.window_s * self.rate)
        self.hop = max(1, round(options.hop_s * self.rate))
        # A stream up to this long is scored whole offline (speech_plan, window_plan).
        self.whole_limit = self.hi if self.speech else self.window
        self.n = 0  # samples seen
        self.buffer = np.zeros(0, np.float32)  # samples [buffer_start, n)
        self.buffer_start = 0
        self.pending: list[tuple[int, int]] = []  # closed regions not yet handed out
        self.speech_samples = 0  # total length of the regions found (the offline speech_s)
        self.utterances = 0  # utterances handed out
        self.spans = 0  # spans handed out (utterances and their windows)
        # Speech longer than window_s: its padded start and the windows already handed out.
        self.long_start: int | None = None
        self.long_windows = 0
        self.announced: int | None = None  # the open run whose start was announced
        self.since_interim = 0  # samples of speech since the last interim

    @property
    def speech_s(self) -> float:
        return self.speech_samples / self.rate

    # --- audio in ----------------------------------------------------------------------------

    def push(self, samples: np.ndarray) -> list[Step]:
        """float32 [samples] at 16 kHz, the stream's next ones -> what they settle."""
        samples = np.asarray(samples, np.float32)
        self.buffer = np.concatenate([self.buffer, samples])
        self.n += len(samples)
        if not self.speech:
            return self._trim(self._fixed_windows(final=False))
        assert self.vad is not None
        steps: list[Step] = []
        for p in self.vad.push(samples):
            region = self.tracker.push(float(p))
            if region is not None:
                self._found(region)
            if self.tracker.open_region(self.n) is not None:
                self.since_interim += CHUNK_SAMPLES
        steps += self._announce()
        steps += self._settle(final=False)
        steps += self._interim()
        return self._trim(steps)

    def finish(self) -> list[Step]:
        """The stream ended: every span left, and the whole stream when it is short."""
        if not self.speech:
            steps = self._fixed_windows(final=True)
        else:
            region = self.tracker.finish(self.n)
            if region is not None:
                self._found(region)
            steps = self._settle(final=True)
        if 0 < self.n <= self.whole_limit:  # offline scores it whole: so does the session
            steps.append(Step("whole", 0, self.n, self._samples(0, self.n)))
        return steps

    # --- speech: regions to utterances -------------------------------------------------------

    def _found(self, region: tuple[int, int]) -> None:
        self.pending.append(region)
        self.speech_samples += region[1] - region[0]

    def _announce(self) -> list[Step]:
        """'speech' once the open run is long enough to be kept (no announcement for blips)."""
        run = self.tracker.open_region(self.n)
        if run is None or not run[2] or self.announced == run[0]:
            return []
        self.announced = run[0]
        return [Step("speech", run[0], run[0])]

    def _crossable(self, before: tuple[int, int], after: tuple[int, int] | None) -> bool:
        """Whether a merge could ever join `before` with what follows it (`after`, the next
        region; None: not heard yet)."""
        if after is not None:
            both_long = before[1] - before[0] >= self.lo and after[1] - after[0] >= self.lo
            return not both_long and after[1] - before[0] <= self.hi
        run = self.tracker.open_region(self.n)
        if run is None:  # a future region starts no earlier than the next chunk
            least_end = (self.tracker.chunks + 1) * CHUNK_SAMPLES
            return least_end - before[0] <= self.hi
        start, least_end, kept = run
        next_long = kept and least_end - start >= self.lo
        if next_long and before[1] - before[0] >= self.lo:
            return False
        return least_end - before[0] <= self.hi

    def _settle(self, final: bool) -> list[Step]:
        """Hand out the held regions up to the last gap no merge can cross."""
        pending = self.pending
        cut = len(pending) if final else self._last_closed_gap()
        if not cut and pending and pending[-1][1] - pending[0][0] > HOLD_LIMIT * self.hi:
            first = utterances(pending, self.rate, *self._bounds())[0]
            cut = sum(1 for r in pending if r[1] <= first[1])
        steps = []
        for a, b in utterances(self.pending[:cut], self.rate, *self._bounds()):
            steps += self._utterance(a, b)
        del self.pending[:cut]
        return steps + self._long_speech()

    def _last_closed_gap(self) -> int:
        """How many held regions lie before the last gap no merge can cross (0: none)."""
        for j in range(len(self.pending) - 1, -1, -1):
            after = self.pending[j + 1] if j + 1 < len(self.pending) else None
            if not self._crossable(self.pending[j], after):
                return j + 1
        return 0

    def _bounds(self) -> tuple[float, float]:
        return self.options.min_segment_s, self.options.max_segment_s

    def _utterance(self, a: int, b: int) -> list[Step]:
        """An utterance's spans: itself, or its windows when longer than window_s (those of
        speech still going on handed out already)."""
        spans = [(a + x, a + y) for x, y in windows(b - a, self.rate, *self._window_s())]
        done = self.long_windows if a == self.long_start else 0
        if a == self.long_start:
            self.long_start, self.long_windows = None, 0
        else:
            self.utterances += 1
        return [self._span(x, y) for x, y in spans[done:]]

    def _window_s(self) -> tuple[float, float]:
        return self.options.window_s, self.options.hop_s

    def _span(self, a: int, b: int) -> Step:
        self.spans += 1
        return Step("utterance", a, b, self._samples(a, b), self.utterances - 1, self.n)

    def _long_speech(self) -> list[Step]:
        """Windows of the open run once it is longer than window_s: nothing can join it, and
        a window is the offline one as soon as the speech reaches its end."""
        run = self.tracker.open_region(self.n)
        if run is None or run[1] - run[0] < self.window:
            return []
        start, least_end, _ = run
        if self.long_start != start:
            self.long_start, self.long_windows = start, 0
            self.utterances += 1
        steps = []
        while start + self.long_windows * self.hop + self.window <= least_end:
            a = start + self.long_windows * self.hop
            steps.append(self._span(a, a + self.window))
            self.long_windows += 1
        return steps

    def _interim(self) -> list[Step]:
        """The open speech so far (its last window_s), every interim_samples of speech."""
        run = self.tracker.open_region(self.n)
        if not self.interim_samples or run is None or self.since_interim < self.interim_samples:
            return []
        self.since_interim = 0
        start = max(run[0], self.n - self.window)
        return [Step("interim", start, self.n, self._samples(start, self.n))]

    # --- windows whatever is said ------------------------------------------------------------

    def _fixed_windows(self, final: bool) -> list[Step]:
        """segmentation='windows': the offline windows over the whole stream, each handed out
        when the stream reaches its end (the last one, aligned to the end, at the end)."""
        steps = []
        while self.spans * self.hop + self.window <= self.n and self.n > self.window:
            a = self.spans * self.hop
            self.utterances += 1
            steps.append(self._span(a, a + self.window))
        if final and self.n > self.window:
            last = (self.spans - 1) * self.hop + self.window if self.spans else 0
            if last < self.n:
                self.utterances += 1
                steps.append(self._span(self.n - self.window, self.n))
        return steps

    # --- the samples kept ----------------------------------------------------------------------

    def _samples(self, a: int, b: int) -> np.ndarray:
        assert a >= self.buffer_start, "a span starts before the samples kept"
        return self.buffer[a - self.buffer_start : b - self.buffer_start].copy()

    def _trim(self, steps: list[Step]) -> list[Step]:
        """Forget the samples no span can need any more."""
        keep = self._needed_from()
        if keep > self.buffer_start:
            self.buffer = self.buffer[keep - self.buffer_start :].copy()
            self.buffer_start = keep
        return steps

    def _needed_from(self) -> int:
        if self.n <= self.whole_limit:  # the stream may yet be scored whole
            return 0
        if not self.speech:  # the next window, or the last window_s for the one at the end
            return min(self.spans * self.hop, max(0, self.n - self.window))
        # Where the next region can start at the earliest: its first chunk is still to come.
        needs = [max(self.tracker.chunks * CHUNK_SAMPLES - self.tracker.pad, self.tracker.last_end)]
        if self.pending:
            needs.append(self.pending[0][0])
        run = self.tracker.open_region(self.n)
        if run is not None:
            start, least_end, _ = run
            next_window = start + self.long_windows * self.hop
            # The last window ends where the speech does: no earlier than least_end (and an
            # interim covers the last window_s before now, later still).
            needs.append(min(next_window, max(start, least_end - self.window)))
        return max(0, min(needs))
