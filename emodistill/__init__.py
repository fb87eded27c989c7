"""The contract shared by every stage and the torch-free runtime.

- The contract: audio in (`audio`), the model bundle (`bundle`).
- The runtime: `load(bundle).predict(audio)` (`recognizer`), over the onnxruntime session
  (`runtime`), live streams `stream(url_or_recognizer, audio)` (`live`, `live_client`),
  decoding with FFmpeg (`decoder`) and its limits (`audio_input`), speech segments
  (`segments`), calibrated probabilities and aggregation (`scoring`); bulk scoring
  (`bulk`, `python -m emodistill score`). The service is an HTTP layer over it.

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
