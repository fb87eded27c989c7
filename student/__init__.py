"""The student model, torch-side: the speech encoder families, their batch-invariant forward
and the saved checkpoint. Training and export both import it; it imports neither."""
