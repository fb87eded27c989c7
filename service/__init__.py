"""The inference service: FastAPI + onnxruntime over a model bundle. Imports no torch."""
