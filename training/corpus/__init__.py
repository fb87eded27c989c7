"""Corpus preparation: every corpus becomes one manifest (see `manifest.py`)."""
