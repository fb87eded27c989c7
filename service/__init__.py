"""The inference service: FastAPI + onnxruntime over a model bundle. Imports no torch."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("emodistill")  # pyproject.toml's, the one home of the number
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"
