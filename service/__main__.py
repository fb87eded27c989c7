"""`python -m service --model BUNDLE [flags]`: serve a bundle (flags or EMODISTILL_ variables)."""

from __future__ import annotations

import logging
import sys

from pydantic import ValidationError

from emodistill.bundle import BundleError
from emodistill.gpu import CudaUnavailable
from emodistill.runtime import OnnxBackend

from .app import create_app
from .server import GracefulServer, server_config
from .settings import settings_from_cli


def main() -> None:
    try:
        settings = settings_from_cli(sys.argv[1:])
    except ValidationError as err:
        sys.exit(f"error: invalid settings: {err}")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # The model is loaded here, before the server, so that a bad bundle or a GPU that cannot
    # be had ends start-up with one line and a non-zero exit rather than a lifespan traceback.
    try:
        backend = OnnxBackend(settings.model, settings.device, settings.int8)
    except BundleError as err:
        sys.exit(f"error: cannot serve {settings.model}: {err}")
    except CudaUnavailable as err:
        sys.exit(f"error: device={settings.device}, but CUDA is unavailable: {err}")
    app = create_app(settings, backend_factory=lambda *_: backend)
    server = GracefulServer(
        server_config(app, settings), settings.shutdown_grace_s, app.state.service
    )
    server.run()


main()
