"""Export: the trained student -> an ONNX model bundle (see `emodistill/bundle.py`)."""
