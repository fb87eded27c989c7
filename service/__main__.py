"""`python -m service --model BUNDLE [flags]`: serve a bundle (the `emodistill serve` job)."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":  # spawned processes import this module as __mp_main__
    main(prog="python -m service")
