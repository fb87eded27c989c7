"""What can go wrong between audio and an answer, one class per failure.

The runtime raises these; each says *what* went wrong in its message and its class, never how
a protocol would answer it. The HTTP layer owns the one map from these classes to statuses
(service/errors.py); a Python user catches the class that matters (`AudioError` for anything
wrong with an input, `EmodistillError` for everything). Torch-free; knows nothing of HTTP.
"""

from __future__ import annotations

import re


class EmodistillError(Exception):
    """Anything the runtime refuses or cannot answer; `str(err)` is the reason."""


class AudioError(EmodistillError, ValueError):
    """An input that gives no usable audio (a ValueError too: training's loaders catch it)."""


class NotAudioError(AudioError):
    """Not a container we read, no audio stream in it, or a Content-Type that is not audio."""


class UnsupportedCodecError(AudioError):
    """A container we read, carrying an audio codec we do not decode."""


class CorruptAudioError(AudioError):
    """It starts like a container we read, but is corrupt or truncated."""


class AudioTooLongError(AudioError):
    """Longer than the limit (`max_audio_s`)."""


class AudioTooLargeError(AudioError):
    """More samples (frames × channels) than the decoding budget (`max_decoded_samples`)."""


class AudioTooShortError(AudioError):
    """Empty, or shorter than the shortest clip accepted."""


class AudioFormatError(AudioError):
    """A sample rate or channel count outside the accepted range."""


class BadSamplesError(AudioError):
    """NaN, infinite or absurd sample values, or samples that are not a mono float array."""


class NonFiniteAnswerError(EmodistillError, ArithmeticError):
    """The model answered NaN or infinity for a clip: never sent on as an answer."""


def without_addresses(message: str) -> str:
    """FFmpeg's messages embed Python object reprs with heap addresses; an error shown to a
    client never carries one."""
    return re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "the upload", message)
