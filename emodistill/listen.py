"""`emodistill listen`: stream a file or standard input to `WS /stream` (or a local bundle)
and print each event as a line of JSON.

    emodistill listen call.wav --url ws://localhost:8000/stream --realtime
    ffmpeg -i call.m4a -f s16le -ac 1 -ar 16000 - | emodistill listen - --url ws://...
    python -m emodistill.listen call.wav --bundle models/demo/bundle

A file is decoded here (any format the service reads) and sent as float32 at 16 kHz; `-`
reads raw PCM from standard input (`--encoding`, `--sample-rate-hz`). Exits 1 with one line
when the stream ends in an error event or cannot start.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator

from emodistill.errors import EmodistillError
from emodistill.live import StreamError


def build_parser(prog: str = "emodistill listen") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    p.add_argument("audio", help="An audio file, or - for raw PCM on standard input.")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="The service's stream, e.g. ws://localhost:8000/stream.")
    target.add_argument("--bundle", help="A model bundle: the stream runs in this process.")
    p.add_argument(
        "--api-key",
        default=os.environ.get("EMODISTILL_API_KEY"),
        help="The service's key (default: $EMODISTILL_API_KEY); sent as a subprotocol.",
    )
    p.add_argument("--realtime", action="store_true", help="Send a file at real time.")
    p.add_argument("--frame-ms", type=float, default=100.0, help="Audio per frame (a file).")
    p.add_argument(
        "--encoding", choices=["pcm_s16le", "f32le"], default="pcm_s16le", help="Stdin's samples."
    )
    p.add_argument("--sample-rate-hz", type=int, default=16_000, help="Stdin's sample rate.")
    p.add_argument(
        "--interim-ms",
        type=float,
        default=None,
        help="Interim interval (0: none; default: the server's).",
    )
    return p


async def _stdin_frames(bytes_per_frame: int) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    while chunk := await loop.run_in_executor(None, sys.stdin.buffer.read, bytes_per_frame):
        yield chunk


async def _listen(args: argparse.Namespace) -> int:
    from emodistill.live import SAMPLE_BYTES
    from emodistill.live_client import stream

    fields = {"encoding": args.encoding, "sample_rate_hz": args.sample_rate_hz}
    if args.interim_ms is not None:
        fields["interim_ms"] = args.interim_ms
    if args.audio == "-":
        frame = SAMPLE_BYTES[args.encoding] * round(args.sample_rate_hz * args.frame_ms / 1000)
        source = _stdin_frames(frame)
    else:
        source = args.audio
    if args.url:
        target = args.url
    else:
        from emodistill.recognizer import load

        target = load(args.bundle)
    failed = False
    async for event in stream(
        target,
        source,
        realtime=args.realtime,
        frame_ms=args.frame_ms,
        api_key=args.api_key,
        **fields,
    ):
        print(event.model_dump_json(), flush=True)
        failed = failed or isinstance(event, StreamError)
    return 1 if failed else 0


def main(argv: list[str] | None = None, prog: str = "emodistill listen") -> None:
    """Streams, prints each event as a line, and exits 0, or 1 on an error."""
    args = build_parser(prog).parse_args(argv)
    try:
        status = asyncio.run(_listen(args))
    except (EmodistillError, OSError) as err:
        sys.exit(f"{prog}: {err}")
    except Exception as err:  # a refused upgrade, a closed connection: one line, not a trace
        sys.exit(f"{prog}: {type(err).__name__}: {err}")
    sys.exit(status)


if __name__ == "__main__":
    main()
