"""``faceage predict INPUT... --out FILE``: one row per face for many photos, unreadable inputs recorded, never fatal.

Columns (CSV) or keys (JSONL), exactly: path, face, x1, y1, x2, y2, det_score, age, age_low, age_high, bin, bin_prob,
error. ``face`` is the 0-based index by box area (largest = 0). A photo without a face gives one row with
``error=no_face``; an unreadable input gives one row with ``error=unreadable: <reason>``.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing as mp
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2

from faceage.detect import DetectorConfig
from faceage.errors import FaceageError, ImageError
from faceage.images import DEFAULT_MAX_BYTES, load_rgb
from faceage.infer.annotate import draw_faces
from faceage.infer.estimator import AgeEstimator, Face

COLUMNS = ["path", "face", "x1", "y1", "x2", "y2", "det_score", "age", "age_low", "age_high", "bin", "bin_prob",
           "error"]  # fmt: skip
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
STDIN = "-"


@dataclass(frozen=True)
class PredictSummary:
    inputs: int
    faces: int
    no_face: int
    unreadable: int

    @property
    def exit_code(self) -> int:
        return 2 if self.unreadable else 0

    def line(self) -> str:
        return (f"{self.inputs} input(s): {self.faces} face(s), {self.no_face} without a face, "
                f"{self.unreadable} unreadable")  # fmt: skip


def expand_inputs(inputs: list[str]) -> list[str]:
    """Files as given, folders searched recursively for images (sorted), ``-`` for standard input."""
    out: list[str] = []
    for item in inputs:
        if item == STDIN:
            out.append(STDIN)
            continue
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            out.extend(str(p) for p in found)
        else:
            out.append(item)  # missing or unreadable files become error rows
    if not out:
        raise FaceageError("no input images: give files, folders with images, or - for standard input")
    return out


def rows_for(path: str, faces: list[Face] | None, error: str = "") -> list[dict]:
    if faces is None or not faces:
        return [{**dict.fromkeys(COLUMNS, ""), "path": path, "error": error or "no_face"}]
    rows = []
    for index, face in enumerate(faces):
        rows.append(
            {
                "path": path,
                "face": index,
                "x1": round(face.box[0], 1),
                "y1": round(face.box[1], 1),
                "x2": round(face.box[2], 1),
                "y2": round(face.box[3], 1),
                "det_score": round(face.det_score, 4),
                "age": round(face.age, 1),
                "age_low": round(face.age_low, 1),
                "age_high": round(face.age_high, 1),
                "bin": face.bin,
                "bin_prob": round(face.bin_probs[face.bin], 4),
                "error": "",
            }
        )
    return rows


_WORKER: AgeEstimator | None = None


def _init_worker(model: str | None, bins: str | None, min_face: int | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:  # fmt: skip
    global _WORKER
    cv2.setNumThreads(1)
    detector = DetectorConfig() if min_face is None else DetectorConfig(min_face_size=min_face)
    _WORKER = AgeEstimator(model=model, bins=bins, detector=detector, max_bytes=max_bytes)


def _predict_one(task: tuple[str, bytes | None, bool, str | None]) -> tuple[str, list[dict]]:
    path, data, cropped, annotate_dir = task
    estimator = _WORKER
    if estimator is None:
        raise RuntimeError("worker not initialised")
    try:
        source = data if data is not None else path
        rgb = load_rgb(source, name=path, max_pixels=estimator.max_pixels, max_bytes=estimator.max_bytes)
        faces = estimator.predict(rgb, cropped=cropped)
    except ImageError as exc:
        return path, rows_for(path, None, f"unreadable: {exc}")
    if annotate_dir:
        target = Path(annotate_dir) / (("stdin" if path == STDIN else Path(path).stem) + ".annotated.jpg")
        cv2.imwrite(str(target), cv2.cvtColor(draw_faces(rgb, faces), cv2.COLOR_RGB2BGR))
    return path, rows_for(path, faces)


def predict_paths(
    inputs: list[str],
    *,
    model: str | None = None,
    bins: str | None = None,
    cropped: bool = False,
    workers: int = 1,
    annotate_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    min_face: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Iterator[dict]:
    """Rows for every input, in input order (``min_face``: smallest face in pixels, default the detector's; an input
    over ``max_bytes`` is an unreadable row, and is not read beyond that)."""
    if min_face is not None:
        DetectorConfig(min_face_size=min_face)  # refuses an impossible size before any work starts
    if max_bytes < 1:
        raise FaceageError(f"the limit per image must be at least 1 byte, not {max_bytes}")
    paths = expand_inputs(inputs)
    stdin_data = sys.stdin.buffer.read(max_bytes + 1) if STDIN in paths else None
    if annotate_dir is not None:
        Path(annotate_dir).mkdir(parents=True, exist_ok=True)
    tasks = [(p, stdin_data if p == STDIN else None, cropped, str(annotate_dir) if annotate_dir else None)
             for p in paths]  # fmt: skip
    if workers <= 1:
        _init_worker(model, bins, min_face, max_bytes)
        results: Iterator = map(_predict_one, tasks)
        pool = None
    else:
        pool = mp.get_context("spawn").Pool(workers, initializer=_init_worker,
                                             initargs=(model, bins, min_face, max_bytes))  # fmt: skip
        results = pool.imap(_predict_one, tasks, chunksize=1)
    try:
        for done, (_, rows) in enumerate(results, start=1):
            yield from rows
            if progress:
                progress(done, len(paths))
    finally:
        if pool is not None:
            pool.close()
            pool.join()


def check_output_path(out: Path) -> str:
    """The output format (".csv" or ".jsonl") from the file name, checked before any work is done."""
    suffix = Path(out).suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise FaceageError(f"{out}: the output must end in .csv or .jsonl")
    return suffix


def write_rows(rows: list[dict], out: Path) -> None:
    suffix = check_output_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    else:
        text = "".join(json.dumps({k: (None if v == "" else v) for k, v in row.items()}) + "\n" for row in rows)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(out)


def summarize(rows: list[dict]) -> PredictSummary:
    paths = {}
    for row in rows:
        paths.setdefault(row["path"], row["error"])
    faces = sum(1 for row in rows if row["error"] == "")
    return PredictSummary(
        inputs=len(paths),
        faces=faces,
        no_face=sum(1 for e in paths.values() if e == "no_face"),
        unreadable=sum(1 for e in paths.values() if str(e).startswith("unreadable")),
    )
