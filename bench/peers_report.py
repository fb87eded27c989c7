"""Section 8 of docs/benchmarks.md and its rows of "Where we stand", from bench/peers.py's JSON:
each bundle's table per client count and wire, the settings and versions of every peer, where a
peer is ahead, and the Python API against transformers' pipeline. Knows nothing of how the
figures were measured.
"""

from __future__ import annotations

from typing import Any

PAIRS = [("multipart", "litserve"), ("multipart", "ray"), ("v2-binary", "triton")]
PAIRS += [("v2-json", "triton")]
NAMES = {"litserve": "LitServe", "ray": "Ray Serve", "triton": "Triton"}


# What a reader needs to weigh the figures (facts of the set-up, no figures).
NOTES = [
    "Every peer decodes with our decoder and limits and scores with our onnxruntime session "
    "(bench/peer_model.py): only the serving stack differs. Triton runs the model in its "
    "Python backend (pytriton: tritonserver's C++ HTTP front end and dynamic batcher, the "
    "batch handed to a Python process); the pip wheel carries no native ONNX Runtime backend, "
    "which would run the graph inside tritonserver with no Python at all. Its dynamic batcher "
    "joins only requests of one shape. The Python backend's stub failed in `initialize` on this "
    "machine (`'_thread.RLock' object has no attribute '_recursion_count'`): it is linked "
    "against `libpython3.11.so` and the loader found Debian's (3.11.2) while the interpreter "
    "(pyenv 3.11.7) gave it its own standard library; with the interpreter's own libpython "
    "first on `LD_LIBRARY_PATH` (bench/peer_triton.py) it runs. nvidia-pytriton 0.7.0 needs "
    "numpy < 2 (on numpy 2.4 its output tensors came back empty), so the peers' venv runs "
    "numpy 1.26 for every server, ours included. transformers' pipeline needs ffmpeg to read a "
    "path and this machine has none: its files are read with soundfile inside the timed part.",
    "",
    "Ours cuts a batch at `max_batch_size` clips, its padded-audio budget, or a clip that would "
    "pad it beyond `max_batch_padding` (since issue 26's fifth round). Since issue 26's "
    "third round it runs the tiny demo, on the CPU, as one model call per core at once, each "
    "in batches of at most 24 s of padded audio (emodistill/streams.py): behind a service, a "
    "small model's operator shared out over the cores waits at its barrier for the core the "
    "event loop has taken, and large batches leave the cache. The runs before it (one call on "
    "both cores, batches of up to 64 s, then 96 s) lost to Triton and LitServe at 64 and 256 "
    "clients. HuBERT-base's operators share out well: since the fourth round the service "
    "times its warm-up and serves a model whose 24 s call takes 0.5 s or more (HuBERT-base: "
    "about 2.7 s) one call at a time on every core, in batches of up to 96 s, which answered "
    "1.20× the requests of streams (docs/service-profile.md). On the JSON wire "
    "ours took about twice the CPU per request of its binary wire, "
    "mostly Python's json reading 48 000 numbers per 3 s clip, where Triton has a C++ "
    "parser. The route then read it with orjson, which still makes a Python float of every "
    "sample and held the GIL for it; since issue 26's fourth round simdjson reads the common "
    "request's samples straight into an array (service/v2_json.py; the settings say which "
    "parser ran).",
    "",
    "An idle LitServe is not idle: its worker polls its queue, 21 % of a core on this 2-core "
    "machine (ours and Triton: under 1 %). Until issue 26's fourth round every server stayed "
    "running while another was driven, so LitServe took that share from ours and Triton "
    "during their rounds, and not the reverse. Every row here was measured with the others "
    "paused (SIGSTOP) while one is driven, Ray excepted (its processes watch each other's "
    "heartbeats).",
    "",
    "With clips of mixed lengths (`--mixed`) a batch costs what its padding costs: every clip "
    "is computed to the batch's longest. LitServe and Ray Serve pad every batch to its "
    "longest clip (their handlers call the same session as ours); Triton's dynamic batcher "
    "joins only requests of one shape, so it never pads, and with 16 lengths in turn its "
    "batches are small; ours joins a clip to a batch only while the padding stays within "
    "`max_batch_padding` of the clips' own audio (emodistill/batching.py). Until issue 26's "
    "sixth round ours filled the oldest clip's batch with the nearest lengths from anywhere in "
    "the queue; on HuBERT-base, where a CPU call costs its padded audio batch or not, those "
    "clips passed older ones, whose wait grew: p99 34.5 s against Triton's 23.2 s at 64 "
    "clients. The service now batches such a model in arrival order, without padding "
    '(`--batch-order auto`; docs/service-profile.md, "The batch order").',
    "",
    "HuBERT-base on 3 s clips sits at the CPU's limit for every server: in issue 26's seventh "
    "round (one round per server and level) all four answered 4.6-4.8 requests/s, 14-14.4 "
    "audio-s/s, where the engine alone gives 15.3 at batch 4 (the CPU's limit above); CPU per "
    "request: ours, LitServe and Triton within 4 % of each other, Ray 8-10 % above. What is "
    "left between them, at most 2 % of requests/s and up to 10 % of p99, is the spread of one "
    "round here.",
]


def ratios(entry: dict[str, Any], kind: str, peer: str) -> list[tuple[str, float, float, float]]:
    """(clients, ours/peer requests/s, our p99 ms, the peer's p99 ms) at each level run."""
    out = []
    for clients, level in entry["levels"].items():
        by = level.get(kind, {})
        if "ours" in by and peer in by:
            ours, theirs = by["ours"], by[peer]
            rate = ours["requests_per_s"] / theirs["requests_per_s"]
            out.append((clients, rate, ours["p99_ms"], theirs["p99_ms"]))
    return out


def report_section(results: Any, model: str) -> list[str]:
    """Section 8 of docs/benchmarks.md: each bundle's table, the settings, the versions."""
    if "peers" not in results:
        return [
            "**Pending**: not run yet: `make bench-peers` (installs the peers into .venv-peers).",
            "",
        ]
    cmd, r = results["peers"]
    lines = [
        f"`{cmd}` ({r['machine']}; {r['clip_s']:g} s clips; requests/s is the median of "
        f"{r['repeats']} rounds, latency over all rounds; servers driven in alternation; the "
        "load generator and other work share the machine). Versions: "
        + ", ".join(f"{k} {v}" for k, v in r["versions"].items())
        + ".",
        "",
        "Settings (each as its documentation recommends for throughput):",
        "",
        *(f"- **{NAMES.get(k, k)}**: {v}" for k, v in r["settings"].items()),
        *([f"- ours ran with `{r['service_args']}`"] if r.get("service_args") else []),
        "",
        *NOTES,
        "",
    ]
    for name, entry in r["bundles"].items():
        clips = f"; {entry['clips']}" if "clips" in entry else ""
        lines += [f"**{name} bundle** (`{entry['bundle']}`{clips})", ""]
        for server, state in entry["servers"].items():
            if state.get("error"):
                lines.append(f"- {NAMES.get(server, server)} did not run: {state['error']}")
        lines += [
            "",
            "| clients | wire | server | req/s | p50 ms | p99 ms | CPU ms/req | mean batch |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for clients, level in entry["levels"].items():
            for kind, by_server in level.items():
                for server, f in by_server.items():
                    lines.append(
                        f"| {clients} | {kind} | {NAMES.get(server, server)} | "
                        f"{f['requests_per_s']:.1f} | {f['p50_ms']:.0f} | {f['p99_ms']:.0f} | "
                        f"{f['cpu_ms_per_request']:.1f} | {f['mean_batch_size']:.2f} |"
                    )
        lines.append("")
    lost = [
        f"{name} bundle, {clients} clients, {kind}: {NAMES[peer]} {1 / rate:.2f}× our "
        f"requests/s, p99 {their_p99:.0f} vs our {ours_p99:.0f} ms"
        for name, entry in r["bundles"].items()
        for kind, peer in PAIRS
        for clients, rate, ours_p99, their_p99 in ratios(entry, kind, peer)
        if rate < 1 or ours_p99 > their_p99
    ]
    lines += [
        "Where a peer is ahead (more requests/s, or ours has the worse p99):",
        "",
        *([f"- {line}" for line in lost] or ["- nowhere in this run"]),
        "",
    ]
    for name, api in r.get("api", {}).items():
        lines += [
            f"Scoring {api['files']} WAV files ({api['audio_s']:.0f} s of audio) from Python, "
            f"{name} bundle (files/s, median of rounds in alternation; checkpoint "
            f"{api['checkpoint']}):",
            "",
            "| how | files/s |",
            "|---|---|",
            *(f"| {how} | {v:.3g} |" for how, v in api["files_per_s"].items()),
            "",
        ]
    return lines


def goals(results: Any) -> list[tuple[str, str]]:
    """ours / each peer (requests/s, with the p99 beside it) and our API / transformers."""
    if "peers" not in results:
        return []
    r = results["peers"][1]
    rows = []
    for kind, peer in PAIRS:
        cells = []
        for name, entry in r["bundles"].items():
            for clients, rate, ours_p99, their_p99 in ratios(entry, kind, peer):
                cells.append(
                    f"{name} {clients}: {rate:.2f}× (p99 {ours_p99:.0f} vs {their_p99:.0f} ms)"
                )
        label = f"ours / {NAMES[peer]}" + (f" ({kind})" if peer == "triton" else "")
        rows.append((label, "; ".join(cells) or "not run (see section 8)"))
    cells = []
    for name, api in r.get("api", {}).items():
        fps = api["files_per_s"]
        theirs = [v for how, v in fps.items() if how.startswith("transformers")]
        if theirs:
            api, bulk = fps["ours: load().predict_many"], fps["ours: bulk score_files"]
            cells.append(f"{name}: {api / max(theirs):.2f}× (bulk {bulk / max(theirs):.2f}×)")
    rows.append(("our API / transformers pipeline (files/s)", "; ".join(cells) or "not run"))
    return rows
