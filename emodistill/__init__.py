"""The contract shared by every stage and the torch-free runtime.

- The contract: audio in (`audio`), the model bundle (`bundle`).
- The runtime: `load(bundle).predict(audio)` (`recognizer`) is the one pipeline (`pipeline`:
  decode with FFmpeg (`decoder`) within the limits (`audio_input`), plan speech segments
  (`segments`), calibrate and aggregate (`scoring`)) over the onnxruntime session (`runtime`),
  answering a typed `Prediction` (`prediction`), with its options in one place (`options`) and
  one error class per failure (`errors`); live streams `stream(url_or_recognizer, audio)`
  (`live`, `live_segments`, `live_client`); bulk scoring (`bulk/`); the `emodistill` command
  (`cli`). The service is an HTTP front end of the same pipeline.

Nothing here may pull in torch, transformers or openSMILE: `service/` and its image import it.
`load` and `Recognizer` are imported on first use, so training, which reads the contract,
does not load onnxruntime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emodistill.live_client import stream
    from emodistill.recognizer import Recognizer, load

__all__ = ["Recognizer", "load", "stream"]


def __getattr__(name: str) -> Any:
    if name == "stream":  # a live stream's events (emodistill.live_client)
        from emodistill.live_client import stream

        return stream
    if name in __all__:
        from emodistill import recognizer

        return getattr(recognizer, name)
    raise AttributeError(f"module 'emodistill' has no attribute {name!r}")
