"""``faceage predict INPUT... --out FILE``: one row per face for many photos, unreadable inputs recorded, never fatal.

What the inputs name (folders, lists, tables, URIs) is :mod:`faceage.infer.inputs`; this module runs them on local
processes, :mod:`faceage.infer.batch` on Ray Data, with the same rows. Columns (CSV), keys (JSONL) or Parquet columns
(:func:`arrow_schema`), exactly: path, face, x1, y1, x2, y2, det_score, age, age_low, age_high, bin, bin_prob,
error. ``face`` is the 0-based index by box area (largest = 0). A photo without a face gives one row with
``error=no_face``; an unreadable input gives one row with ``error=unreadable: <reason>``.

Where results go is checked before any photo is read (:func:`check_output_path`, :func:`check_annotate_dir`), and
:class:`RowWriter` writes each input's rows as soon as they are finished, into a temporary file beside the output
that becomes the output when the run ends, or when it is interrupted (Ctrl-C): the file is then valid and holds
every finished input.
"""

from __future__ import annotations

import csv
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
from faceage.files import Replacement, make_writable_folder
from faceage.images import DEFAULT_MAX_BYTES
from faceage.infer.annotate import annotated_names, draw_faces, write_image
from faceage.infer.estimator import AgeEstimator, Face
from faceage.infer.inputs import STDIN, expand_inputs, read_input, skipped_note

COLUMNS = ["path", "face", "x1", "y1", "x2", "y2", "det_score", "age", "age_low", "age_high", "bin", "bin_prob",
           "error"]  # fmt: skip


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


def worker_estimator(model: str | None, bins: str | None, min_face: int | None = None,
                     max_bytes: int = DEFAULT_MAX_BYTES, threads: int | None = 1) -> AgeEstimator:  # fmt: skip
    """The estimator of one worker (a process here, an actor in :mod:`faceage.infer.batch`): one thread each, the
    workers side by side using the cores; ``threads=None`` for the only worker (the default thread count)."""
    cv2.setNumThreads(1)
    detector = DetectorConfig() if min_face is None else DetectorConfig(min_face_size=min_face)
    return AgeEstimator(model=model, bins=bins, threads=threads, detector=detector, max_bytes=max_bytes)


_WORKER: AgeEstimator | None = None


def _init_worker(model: str | None, bins: str | None, min_face: int | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES, threads: int | None = 1) -> None:  # fmt: skip
    global _WORKER
    _WORKER = worker_estimator(model, bins, min_face, max_bytes, threads)


@dataclass(frozen=True)
class PhotoResult:
    """One photo through the predict path: its rows, faces and size (None when it could not be read, ``error`` then
    saying why), and what went wrong writing its annotated copy ("" when nothing did)."""

    rows: list[dict]
    faces: list[Face] | None
    size: tuple[int, int] | None  # width, height
    error: str = ""
    problem: str = ""


def estimate_photo(estimator: AgeEstimator, name: str, source=None, cropped: bool = False,
                   annotate_target: str | Path | None = None) -> PhotoResult:  # fmt: skip
    """Read the photo (``source``: its bytes, pixels or file, else the file or URI ``name``; rows are labelled
    ``name``), estimate every face, make its rows and, given ``annotate_target``, its annotated copy; an unreadable
    photo is an error row, never raised."""
    try:
        rgb = read_input(name, source, max_pixels=estimator.max_pixels, max_bytes=estimator.max_bytes)
        faces = estimator.predict(rgb, cropped=cropped)
    except ImageError as exc:
        return PhotoResult(rows_for(name, None, f"unreadable: {exc}"), None, None, str(exc))
    problem = write_image(annotate_target, draw_faces(rgb, faces)) if annotate_target else ""
    return PhotoResult(rows_for(name, faces), faces, (int(rgb.shape[1]), int(rgb.shape[0])), "", problem)


def _predict_one(task: tuple[str, bytes | None, bool, str | None]) -> tuple[str, list[dict], str]:
    """(path, rows, problem writing its annotated copy or "")."""
    path, data, cropped, annotate_target = task
    if _WORKER is None:
        raise RuntimeError("worker not initialised")
    result = estimate_photo(_WORKER, path, data, cropped, annotate_target)
    return path, result.rows, result.problem


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
    problems: list[str] | None = None,
    notes: list[str] | None = None,
) -> Iterator[dict]:
    """Rows for every input, in input order (``min_face``: smallest face in pixels, default the detector's; an input
    over ``max_bytes`` is an unreadable row, and is not read beyond that). Annotated copies that could not be written
    are reported in ``problems`` (given a list); what the folders held that was not read, in ``notes``."""
    if min_face is not None:
        DetectorConfig(min_face_size=min_face)  # refuses an impossible size before any work starts
    if max_bytes < 1:
        raise FaceageError(f"the limit per image must be at least 1 byte, not {max_bytes}")
    skipped: list[str] = []
    paths = expand_inputs(inputs, skipped)
    if skipped and notes is not None:
        notes.append(skipped_note(skipped))
    if annotate_dir is not None:
        check_annotate_dir(Path(annotate_dir))
    stdin_data = _read_stdin(max_bytes) if STDIN in paths else None
    targets = ([str(Path(annotate_dir) / name) for name in annotated_names(paths)] if annotate_dir is not None
               else [None] * len(paths))  # fmt: skip
    tasks = [(p, stdin_data if p == STDIN else None, cropped, target) for p, target in zip(paths, targets, strict=True)]
    if workers <= 1:
        _init_worker(model, bins, min_face, max_bytes, threads=None)  # alone: the default threads
        results: Iterator = map(_predict_one, tasks)
        pool = None
    else:
        pool = mp.get_context("spawn").Pool(workers, initializer=_init_worker,
                                             initargs=(model, bins, min_face, max_bytes))  # fmt: skip
        results = pool.imap(_predict_one, tasks, chunksize=1)
    try:
        for done, (_, rows, problem) in enumerate(results, start=1):
            if problem and problems is not None:
                problems.append(problem)
            yield from rows
            if progress:
                progress(done, len(paths))
    except BaseException:  # interrupted (Ctrl-C) or the consumer stopped: the workers are not waited for
        if pool is not None:
            pool.terminate()
            pool.join()
            pool = None
        raise
    finally:
        if pool is not None:
            pool.close()
            pool.join()


def _read_stdin(max_bytes: int) -> bytes:
    """Standard input, at most ``max_bytes`` + 1 bytes (so that a larger input is refused as such); closed: b""."""
    if sys.stdin is None or sys.stdin.closed:
        return b""
    try:
        return sys.stdin.buffer.read(max_bytes + 1)
    except (OSError, ValueError):  # closed or unreadable descriptor: an empty input, reported as such
        return b""


OUTPUT_SUFFIXES = (".csv", ".jsonl", ".parquet")


def check_output_path(out: Path) -> str:
    """The output format (".csv", ".jsonl" or ".parquet") from the file name, and that the file can be written, checked
    before any work is done."""
    suffix = Path(out).suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise FaceageError(f"{out}: the output must end in .csv, .jsonl or .parquet")
    out = Path(out)
    if out.is_dir():
        raise FaceageError(f"{out}: is a folder; give a file name ending in {suffix} for --out")
    for folder in (out.parent, *out.parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise FaceageError(f"{out}: {folder} is a file, not a folder; choose another --out")
            break
    return suffix


def check_annotate_dir(folder: Path) -> None:
    """That annotated copies can be written into ``folder`` (created if missing), checked before any work."""
    if folder.exists() and not folder.is_dir():
        raise FaceageError(f"{folder}: is a file; give a folder for --annotate")
    try:
        make_writable_folder(folder)
    except OSError as exc:
        raise FaceageError(f"{folder}: annotated copies cannot be written there ({exc.strerror or exc}); choose "
                           "another --annotate folder") from None  # fmt: skip


def arrow_schema():
    """The columns as typed in Parquet (and Arrow): a blank cell of the CSV is a null, as in JSON Lines."""
    import pyarrow as pa

    floats = {"x1", "y1", "x2", "y2", "det_score", "age", "age_low", "age_high", "bin_prob"}
    types = {"face": pa.int64(), **dict.fromkeys(floats, pa.float64())}
    return pa.schema([(name, types.get(name, pa.string())) for name in COLUMNS])


def with_nulls(row: dict) -> dict:
    """A row with its blank cells as nulls: how JSON Lines and Parquet write what CSV leaves empty."""
    return {k: (None if v == "" else v) for k, v in row.items()}


def rows_to_arrow(rows: list[dict]):
    """Rows of :func:`rows_for` as an Arrow table of :func:`arrow_schema` ("" becomes null)."""
    import pyarrow as pa

    return pa.Table.from_pylist([with_nulls(row) for row in rows],
                                schema=arrow_schema())  # fmt: skip


def rows_from_arrow(table) -> list[dict]:
    """The rows of :func:`rows_to_arrow` back as :func:`rows_for` makes them (null becomes "")."""
    return [{k: ("" if v is None else v) for k, v in row.items()} for row in table.select(COLUMNS).to_pylist()]


class RowWriter:
    """Rows written as they come into ``.<name>.<pid>.tmp`` beside ``out``, which becomes ``out`` on :meth:`close`
    (also after an interruption: the file is valid and holds every row written). Opened before any work, so a place
    that cannot be written is found at once. Parquet rows are written in row groups of ``PARQUET_GROUP`` rows."""

    PARQUET_GROUP = 1000

    def __init__(self, out: Path):
        self.out = Path(out)
        self.suffix = check_output_path(self.out)
        self.rows = 0
        self.pending: list[dict] = []
        try:
            self.replacement = Replacement(self.out, tag=str(os.getpid()))
            self.tmp = self.replacement.path
            if self.suffix == ".parquet":
                import pyarrow.parquet as pq

                self.parquet = pq.ParquetWriter(self.tmp, arrow_schema())
            else:
                self.handle = open(self.tmp, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            if getattr(self, "replacement", None) is not None:
                self.replacement.discard()
            raise FaceageError(f"{self.out}: cannot be written ({exc.strerror or exc}); choose another --out") from None
        if self.suffix == ".csv":
            self.csv = csv.DictWriter(self.handle, fieldnames=COLUMNS)
            self.csv.writeheader()

    def write(self, rows: list[dict]) -> None:
        if self.suffix == ".parquet":
            self.pending.extend(rows)
            self.rows += len(rows)
            if len(self.pending) >= self.PARQUET_GROUP:
                self._write_pending()
            return
        for row in rows:
            if self.suffix == ".csv":
                self.csv.writerow(row)
            else:
                self.handle.write(json.dumps(with_nulls(row)) + "\n")
            self.rows += 1
        self.handle.flush()

    def _write_pending(self) -> None:
        if self.pending:
            self.parquet.write_table(rows_to_arrow(self.pending))
            self.pending = []

    def _close_file(self) -> None:
        if self.suffix == ".parquet":
            self.parquet.close()
        else:
            self.handle.close()

    def close(self) -> None:
        """Make the rows written so far the output file."""
        if self.suffix == ".parquet":
            self._write_pending()
        self._close_file()
        self.replacement.commit()

    def discard(self) -> None:
        self._close_file()
        self.replacement.discard()


def open_outputs(out: str | Path | None, annotate_dir: Path | None) -> RowWriter | None:
    """The writer of ``--out`` (None: the rows go to the screen) and the ``--annotate`` folder, both checked before
    any photo is read; nothing is left behind when either cannot be used."""
    writer = RowWriter(Path(out)) if out is not None else None
    if annotate_dir is not None:
        try:
            check_annotate_dir(Path(annotate_dir))
        except FaceageError:
            if writer is not None:
                writer.discard()
            raise
    return writer


def stream_rows(found: Iterator[dict], writer: RowWriter | None) -> tuple[list[dict], bool]:
    """Every row of ``found`` kept and written (by ``writer``, if any) as it comes; returns (rows, interrupted).
    Ctrl-C stops the run and the output still becomes a valid file of the finished rows; any other error discards
    the output and is raised."""
    rows: list[dict] = []
    interrupted = False
    try:
        for row in found:
            rows.append(row)
            if writer is not None:
                writer.write([row])
    except KeyboardInterrupt:
        interrupted = True
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    if writer is not None:
        writer.close()
    return rows, interrupted


def write_rows(rows: list[dict], out: Path) -> None:
    writer = RowWriter(out)
    try:
        writer.write(rows)
    except BaseException:
        writer.discard()
        raise
    writer.close()


def summarize(rows: list[dict]) -> PredictSummary:
    """Counts over the rows of :func:`predict_paths`: each input starts with its first face (``face`` 0) or its only,
    faceless row, so the same path given twice counts twice."""
    first_rows = [row for row in rows if row["face"] in ("", 0, "0", None)]
    return PredictSummary(
        inputs=len(first_rows),
        faces=sum(1 for row in rows if row["error"] == ""),
        no_face=sum(1 for row in first_rows if row["error"] == "no_face"),
        unreadable=sum(1 for row in first_rows if str(row["error"]).startswith("unreadable")),
    )
