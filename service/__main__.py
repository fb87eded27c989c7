"""`python -m service --model BUNDLE [flags]`: serve a bundle (flags or EMODISTILL_ variables)."""

from __future__ import annotations

import logging
import sys

import uvicorn
from pydantic import ValidationError

from emodistill.bundle import BundleError, load_bundle

from .app import create_app
from .settings import settings_from_cli


def main() -> None:
    try:
        settings = settings_from_cli(sys.argv[1:])
    except ValidationError as err:
        sys.exit(f"error: invalid settings: {err}")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        load_bundle(settings.model)  # one clear message instead of a traceback at start-up
    except BundleError as err:
        sys.exit(f"error: cannot serve {settings.model}: {err}")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=30,
    )


main()
