"""`python -m bench [--full | --gpu]` (make bench): run the benchmarks, write docs/benchmarks.md.

Quick by default (minutes on 2 CPU cores); --full runs every size and length on the CPU;
--gpu runs the GPU set (engine up to batch 128, the base bundle's CUDA parity, the service on
CUDA) and needs onnxruntime-gpu. This only orders and runs them: which scripts, with which
arguments, is bench/commands.py; each script prints its table and writes its JSON into
docs/bench/; then bench/report.py collects each benchmark's own section (its module's
`report_section`) into the report, with the machine and the exact commands. A section whose
JSON is absent says "pending": figures are never invented. Each section names the machine and
command of its own run, and every ratio is taken within one run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from bench.commands import FULL, GPU, OUT, QUICK, Settings, command_for, shown
from bench.report import load_results, write_report


def run_all(settings: Settings, model: str) -> list[str]:
    """Run each script, write its JSON; the names that failed (the others still run)."""
    OUT.mkdir(parents=True, exist_ok=True)
    failed = []
    for name, (script, args) in settings.items():
        command = command_for(name, script, args, model)
        print(f"\n$ {shown(command)}", flush=True)
        if subprocess.run(command).returncode != 0:
            failed.append(name)
            continue
        out = Path(command[-1])
        data = json.loads(out.read_text())
        data["command_shown"] = shown(command)  # what the report prints, exactly as run
        out.write_text(json.dumps(data, indent=2) + "\n")
    return failed


def main(argv: list[str] | None = None, prog: str = "python -m bench") -> None:
    p = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--full", action="store_true", help="every size and length on the CPU (long)")
    p.add_argument("--gpu", action="store_true", help="the GPU set (needs onnxruntime-gpu)")
    p.add_argument("--model", default="models/demo/bundle", help="demo bundle for the service load")
    p.add_argument("--report-only", action="store_true", help="rebuild the report from docs/bench")
    p.add_argument("--only", default=None, help="run these sections alone, e.g. engine,service")
    args = p.parse_args(argv)
    failed = []
    if args.gpu and not args.report_only:
        import torch

        if not torch.cuda.is_available():
            sys.exit("error: the GPU set needs a GPU, and torch sees none (no figure written)")
    if not args.report_only:
        settings = GPU if args.gpu else FULL if args.full else QUICK
        if args.only:
            wanted = args.only.split(",")
            if unknown := set(wanted) - set(settings):
                p.error(f"unknown sections {sorted(unknown)}; these run here: {list(settings)}")
            settings = {name: settings[name] for name in wanted}
        failed = run_all(settings, args.model)
    print(f"\nreport: {write_report(load_results(), args.model)}")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
