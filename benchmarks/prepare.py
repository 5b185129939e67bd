"""Time `faceage prepare` on the full UTKFace archive and print images/s.

    .venv/bin/python benchmarks/prepare.py [--archive ../shared/data/UTKFace.tar.gz] [--workers 2]

Runs the real command in a fresh process on a fresh output folder (nothing resumed), then writes the table to
benchmarks/results/prepare.md and into the README's results section.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

import readme
from readme import publish

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archive", type=Path, default=ROOT.parent / "shared" / "data" / "UTKFace.tar.gz")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not args.archive.is_file():
        sys.exit(f"no archive at {args.archive}; pass --archive PATH")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "utk"
        command = [sys.executable, "-m", "faceage.cli", "prepare", str(args.archive), "--out", str(out),
                   "--workers", str(args.workers)]  # fmt: skip
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        manifest = pd.read_parquet(out / "manifest.parquet")
        meta = json.loads((out / "meta.json").read_text())
    counts = manifest["status"].value_counts()
    named_readable = int(counts.get("ok", 0) + counts.get("no_face", 0))
    rows = [
        ("files in archive", f"{len(manifest):,}"),
        ("wall time (whole command, fresh output)", f"{seconds:.1f} s"),
        ("throughput", f"{len(manifest) / seconds:.1f} images/s"),
        ("workers / CPU cores", f"{args.workers} / {os.cpu_count()}"),
        ("usable faces (ok)", f"{int(counts.get('ok', 0)):,}"),
        ("no face detected", f"{int(counts.get('no_face', 0))} ({counts.get('no_face', 0) / named_readable:.2%})"),
        ("duplicate content", f"{int(counts.get('duplicate', 0))}"),
        ("malformed names", f"{int(counts.get('bad_name', 0))}"),
        ("unreadable", f"{int(counts.get('unreadable', 0))}"),
        ("bins", meta["bins"]),
    ]
    table = "| measure | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    machine = readme.machine(threads=args.workers)
    text = f"`python benchmarks/prepare.py` on {machine}:\n\n{table}\n"
    print(text)
    publish(text, "prepare.md", "prepare")


if __name__ == "__main__":
    main()
