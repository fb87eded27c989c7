"""Bulk scoring: many files (paths, globs, URIs, manifests) -> one table, resumable.

One stage a module: `inputs` (what to score: expansion, URIs, manifests), `decode` (worker
processes decoding ahead of the model), `score` (the loop: chunks through the recognizer's
pipeline, `score_files`), `rows` (answers as table rows), `journal` (what is done, for
resuming after a kill), `formats` (Parquet, CSV, JSON Lines), `ray` (the same on Ray Data).
`python -m emodistill score` (or `emodistill score`) is its command line.
"""

from emodistill.bulk.score import BulkOptions, BulkSummary, score_files

__all__ = ["BulkOptions", "BulkSummary", "score_files"]
