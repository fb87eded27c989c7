"""`python -m service --model BUNDLE [flags]`: serve a bundle (flags or EMODISTILL_ variables)."""

from __future__ import annotations

import logging
import sys

from pydantic import ValidationError

from emodistill.runtime import OnnxBackend

from .processes import serve
from .settings import settings_from_cli


def main() -> None:
    try:
        settings = settings_from_cli(sys.argv[1:])
    except ValidationError as err:
        sys.exit(f"error: invalid settings: {err}")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(serve(settings, OnnxBackend))


if __name__ == "__main__":  # spawned processes import this module as __mp_main__
    main()
