"""Process layouts of the real service against each other, in alternation: which serves more?

    python -m bench.layouts [--model models/demo/bundle] [--layouts '--workers 1;--workers 2']
                            [--clients 64] [--requests 300] [--rounds 7] [--clip-s 2]

Starts one service per layout (each `python -m service` with those flags; idle ones cost
nothing), then runs rounds of `--requests` POSTs at `--clients`, the layouts taking turns
each round (the order rotating), so a slow spell of a shared machine lands on all alike.
Prints each layout's median requests/s and its ratio to the first layout's. bench/frontend.py
measures the layouts against a simulated GPU; this one on the model itself.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import statistics

from bench.service_load import fire, speech_like, start_service


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="models/demo/bundle")
    p.add_argument("--layouts", default="--workers 1;--workers 2", help="flag sets, ;-separated")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--clip-s", type=float, default=2.0)
    args = p.parse_args()
    body = speech_like(args.clip_s)
    layouts = [flags.strip() for flags in args.layouts.split(";")]
    started = [start_service(args.model, shlex.split(flags)) for flags in layouts]
    rates: dict[str, list[float]] = {flags: [] for flags in layouts}
    try:
        for _, url, _ in started:  # warm-up: every worker's first requests
            asyncio.run(fire(url, body, 4 * args.clients, args.clients))
        for round_index in range(args.rounds):
            shift = round_index % len(layouts)
            order = list(zip(layouts, started, strict=True))
            for flags, (_, url, _) in order[shift:] + order[:shift]:
                wall, _ = asyncio.run(fire(url, body, args.requests, args.clients))
                rates[flags].append(args.requests / wall)
    finally:
        for process, _, _ in started:
            process.terminate()
            process.wait(timeout=60)
    first = statistics.median(rates[layouts[0]])
    print(f"{args.clients} clients, {args.clip_s:g} s clips, median of {args.rounds} rounds:")
    for flags in layouts:
        median = statistics.median(rates[flags])
        rounds = ", ".join(f"{r:.0f}" for r in rates[flags])
        print(f"  {flags}: {median:.0f} req/s ({median / first:.2f}×) rounds: {rounds}")


if __name__ == "__main__":
    main()
