"""Photos per second: plain `faceage predict --workers 2` against `--engine ray` with 1 and 2 workers, same folder.

    .venv/bin/python benchmarks/scale.py [--copies 10] [--repeats 2] [--no-readme]

The folder holds the shared photos (../shared/data/photos: portraits up to 2048 px and group photos, 1-6 faces) and
scikit-image's astronaut, coffee (no face) and a corrupt file, each COPIES times under distinct names. Every engine
runs as a user runs it (a `faceage predict` child process writing Parquet), over a one-copy folder and over the full
folder; the difference between the two is the work the extra photos cost, so

- steady photos/s = (photos in the full folder - photos in the small one) / (difference of the wall times), and
- fixed cost = the wall time of the small run minus its photos at that rate: starting Python, loading the models,
  and for Ray starting a local Ray, its workers and the actors, and stopping them.

The best of REPEATS runs counts for each. Ray starts a Ray on this machine for each run (no --ray-address). Also
measured: CPU-seconds per photo (workers / steady photos/s), the figure that carries over to more nodes. Writes
benchmarks/results/scale.md and the README's scale section.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from skimage import data

import readme
from readme import publish

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "photos"
RUNS = [("local processes", "local", 2), ("Ray Data", "ray", 1), ("Ray Data", "ray", 2)]


def make_folder(root: Path, copies: int) -> int:
    """COPIES of each photo in ``root``; the number of photos written."""
    root.mkdir(parents=True)
    sources: dict[str, bytes] = {p.name: p.read_bytes() for p in sorted(PHOTOS.glob("*.jpg"))}
    for name, array in (("astronaut.jpg", data.astronaut()), ("coffee-no-face.jpg", data.coffee())):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=90)
        sources[name] = buffer.getvalue()
    sources["corrupt.jpg"] = b"\xff\xd8\xff\xe0 not a JPEG"
    for copy in range(copies):
        for name, content in sources.items():
            (root / f"{copy:03d}-{name}").write_bytes(content)
    return copies * len(sources)


def wall_time(folder: Path, engine: str, workers: int, out: Path) -> float:
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "faceage.cli", "predict", str(folder), "--workers", str(workers),
               "--engine", engine, "--out", str(out)]  # fmt: skip
    start = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - start
    if run.returncode not in (0, 2):  # 2: the corrupt file, as expected
        raise SystemExit(f"{' '.join(command)} failed ({run.returncode}):\n{run.stderr[-3000:]}")
    return seconds


def ray_start_stop() -> float:
    """Seconds to start and stop a local Ray alone, in a fresh process (its import not counted)."""
    code = ("import time, ray; t = time.perf_counter(); ray.init(include_dashboard=False, log_to_driver=False); "
            "ray.shutdown(); print(time.perf_counter() - t)")  # fmt: skip
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return float(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    if not PHOTOS.is_dir():
        raise SystemExit(f"{PHOTOS} is missing: this benchmark needs the shared photos")
    work = Path(tempfile.mkdtemp(prefix="faceage-scale-"))
    try:
        small_n, large_n = make_folder(work / "small", 1), make_folder(work / "large", args.copies)
        ray_alone = min(ray_start_stop() for _ in range(args.repeats))
        rows = []
        for label, engine, workers in RUNS:
            small = min(wall_time(work / "small", engine, workers, work / "out.parquet") for _ in range(args.repeats))
            large = min(wall_time(work / "large", engine, workers, work / "out.parquet") for _ in range(args.repeats))
            rate = (large_n - small_n) / (large - small)
            fixed = small - small_n / rate
            rows.append((label, engine, workers, rate, fixed, large))
            print(f"{label}, {workers} worker(s): {rate:.2f} photos/s, fixed {fixed:.1f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        f"`python benchmarks/scale.py --copies {args.copies}` on {readme.machine()}: `faceage predict FOLDER --out "
        f"ages.parquet` over {large_n} photos (the shared photos, astronaut, a photo without a face and a corrupt "
        f"file, {args.copies} copies each) and over {small_n} (one copy), best of {args.repeats}:",
        "",
        "| engine | workers | steady photos/s | CPU-seconds per photo | fixed cost per run | wall time, "
        f"{large_n} photos |",
        "|---|---|---|---|---|---|",
    ]
    for label, engine, workers, rate, fixed, large in rows:
        option = f"`--engine {engine} --workers {workers}`"
        lines.append(f"| {label} ({option}) | {workers} | {rate:.2f} | {workers / rate:.2f} | {fixed:.1f} s | "
                     f"{large:.1f} s |")  # fmt: skip
    lines += ["", f"Starting and stopping a local Ray alone (`ray.init()`, `ray.shutdown()`): {ray_alone:.1f} s."]
    table = "\n".join(lines) + "\n"
    print(table)
    publish(table, "scale.md", None if args.no_readme else "scale")


if __name__ == "__main__":
    main()
