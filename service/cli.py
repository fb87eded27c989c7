"""`emodistill serve [flags]` (also `python -m service`): every setting a flag, from `Settings`.

Each field of service/settings.py's `Settings` is a flag of the same name in kebab case
(`max_batch_size` -> `--max-batch-size`) with the field's description as its help; flags win
over EMODISTILL_ variables, which win over the defaults. Booleans take `--int8` alone or a
value (`--warmup false`); a list takes a JSON list or comma-separated values.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import ValidationError
from pydantic.fields import FieldInfo

from .settings import Settings

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _boolean(text: str) -> bool:
    if text.lower() in TRUE:
        return True
    if text.lower() in FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _string_list(text: str) -> list[str]:
    if text.strip().startswith("["):
        values = json.loads(text)
        if not isinstance(values, list):
            raise argparse.ArgumentTypeError("expected a JSON list")
        return [str(v) for v in values]
    return [v.strip() for v in text.split(",") if v.strip()]


def _flag_options(field: FieldInfo) -> dict[str, Any]:
    """argparse options for one field; its value is checked by pydantic afterwards."""
    annotation = field.annotation
    if get_origin(annotation) in (Union, types.UnionType):  # X | None
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    default = field.get_default(call_default_factory=True)
    help_text = f"{field.description or ''} (default: {default})".strip()
    options: dict[str, Any] = {"default": None, "help": help_text}
    if annotation is bool:
        return {**options, "type": _boolean, "nargs": "?", "const": True, "metavar": "BOOL"}
    if get_origin(annotation) is Literal:
        return {**options, "choices": [str(a) for a in get_args(annotation)]}
    if get_origin(annotation) is list:
        return {**options, "type": _string_list, "metavar": "LIST"}
    if annotation in (int, float):
        return {**options, "type": annotation}
    return options  # str, Path: pydantic converts


def build_parser(prog: str = "emodistill serve") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve a model bundle over HTTP. Every flag is also an EMODISTILL_ "
        "variable (--max-batch-size: EMODISTILL_MAX_BATCH_SIZE); flags win.",
    )
    for name, field in Settings.model_fields.items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, **_flag_options(field))
    return parser


def settings_from_cli(argv: list[str] | None = None, prog: str = "emodistill serve") -> Settings:
    """Settings from flags (argv), then EMODISTILL_ variables, then defaults."""
    given = vars(build_parser(prog).parse_args(list(argv or [])))
    return Settings(**{name: value for name, value in given.items() if value is not None})


def main(
    argv: list[str] | None = None,
    prog: str = "emodistill serve",
    early_signals: list[int] | None = None,
) -> None:
    """Serve, and exit with the service's status (service/server.py's EXIT_STATUS).
    `early_signals`: stop signals noted before this ran (python -m service notes them from
    its first line); from here on they are noted here, and the model never loads after one."""
    noted = early_signals if early_signals is not None else []
    for stop_signal in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(stop_signal, lambda sig, frame: noted.append(sig))
    from emodistill.runtime import OnnxBackend

    from .processes import serve
    from .server import StopRequests

    try:
        settings = settings_from_cli(sys.argv[1:] if argv is None else argv, prog)
    except ValidationError as err:
        sys.exit(f"error: invalid settings: {err}")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(serve(settings, OnnxBackend, StopRequests(noted)))
