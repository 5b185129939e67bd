"""``faceage prepare``: UTKFace sources → labelled, aligned face crops, manifest, split and quality report.

Flow: stream files from the sources → parse the name (labels) → decode → MTCNN → main face → aligned crop (JPEG,
temp file + rename) → a journal of finished records (Parquet chunks, temp file + rename) → at the end: duplicates,
age bins, split, ``manifest.parquet``, ``quality.csv`` and ``meta.json``.

Crash-safe and resumable: a re-run reads the journal and skips finished files; a record is journaled only after its
crop exists, so a run killed at any moment (even SIGKILL) and re-run gives the same manifest as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from faceage import __version__
from faceage.bins import AgeBins
from faceage.data.manifest import (
    COLUMNS,
    MANIFEST,
    META,
    QUALITY,
    atomic_write_parquet,
    quality_report,
)
from faceage.data.sources import SourceItem, count_items, iter_items
from faceage.data.split import assign_split
from faceage.data.utkface import BadName, parse_name
from faceage.detect import (
    ALIGNMENT_VERSION,
    DEFAULT_CROP_SIZE,
    MTCNN,
    SAME_ALIGNMENT,
    DetectorConfig,
    align_face,
    select_face,
)
from faceage.errors import FaceageError, ImageError
from faceage.files import atomic_write_bytes, atomic_write_text, make_writable_folder
from faceage.images import DEFAULT_MAX_BYTES, load_rgb

JOURNAL_DIR = ".prepare"
JOURNAL_CHUNK = 500  # records per journal file, at most
# and at least this often while work is finishing (seconds; the environment variable is for tests)
JOURNAL_SECONDS = float(os.environ.get("FACEAGE_JOURNAL_SECONDS", "1.0"))


@dataclass(frozen=True)
class PrepareConfig:
    crop_size: int = DEFAULT_CROP_SIZE
    jpeg_quality: int = 95
    min_face_size: int = 20
    min_score: float = 0.9
    alignment: str = ALIGNMENT_VERSION
    max_file_bytes: int = DEFAULT_MAX_BYTES  # larger files and archive members are not read (an "unreadable" row)

    def __post_init__(self) -> None:
        """Every setting checked before anything is written (a refused setting leaves no trace in the folder)."""
        checks = [
            (isinstance(self.crop_size, int) and 32 <= self.crop_size <= 1024, "--crop-size must be 32-1024 pixels"),
            (isinstance(self.jpeg_quality, int) and 1 <= self.jpeg_quality <= 100, "the JPEG quality must be 1-100"),
            (isinstance(self.min_face_size, int) and self.min_face_size >= 12, "the smallest face must be >= 12 px"),
            (0.0 <= self.min_score <= 1.0, "--min-score is an MTCNN probability: between 0 and 1"),
            (self.max_file_bytes >= 1, "the limit per file must be at least 1 byte"),
        ]
        for ok, message in checks:
            if not ok:
                raise FaceageError(f"{message}, not {self!r}")

    def detector(self) -> DetectorConfig:
        return DetectorConfig(min_face_size=self.min_face_size, min_score=self.min_score, threads=1)


@dataclass(frozen=True)
class PrepareSummary:
    data_dir: Path
    total: int
    processed_now: int
    resumed: int
    seconds: float
    status_counts: dict[str, int]
    split_counts: dict[str, int]

    @property
    def images_per_second(self) -> float:
        return self.processed_now / self.seconds if self.seconds > 0 else 0.0

    @property
    def no_face_share(self) -> float:
        named = sum(v for k, v in self.status_counts.items() if k in ("ok", "no_face"))
        return self.status_counts.get("no_face", 0) / named if named else 0.0


# ----------------------------------------------------------------------------------------------------------------
# One image (runs in worker processes)
# ----------------------------------------------------------------------------------------------------------------

_DETECTOR: MTCNN | None = None
_WORKER_CONFIG: PrepareConfig | None = None
_WORKER_OUT: Path | None = None


def _init_worker(config: PrepareConfig, out_dir: Path) -> None:
    global _DETECTOR, _WORKER_CONFIG, _WORKER_OUT
    cv2.setNumThreads(1)
    _DETECTOR, _WORKER_CONFIG, _WORKER_OUT = MTCNN(config.detector()), config, out_dir


def crop_path_for(key: str) -> str:
    digest = hashlib.sha1(key.encode()).hexdigest()
    return f"crops/{digest[:2]}/{digest[:20]}.jpg"


def process_item(item: SourceItem) -> dict:
    """Labels, detection and aligned crop for one file; returns its manifest record (never raises)."""
    if _DETECTOR is None or _WORKER_CONFIG is None or _WORKER_OUT is None:
        raise RuntimeError("process_item runs in a worker started by prepare(); call prepare() instead")
    record: dict = {c: None for c in COLUMNS}
    record.update(key=item.key, source=item.source, member=item.member, sha1=hashlib.sha1(item.data).hexdigest())
    record.update(status="ok", reason="", n_faces=0, crop="", bin="", split="")
    try:
        labels = parse_name(item.member)
        record.update(age=labels.age, gender=labels.gender, race=labels.race, datetime=labels.datetime)
    except BadName as exc:
        record.update(status="bad_name", reason=str(exc))
    try:
        if item.error:  # too large or not readable: its data was never read (and its digest is not its content's)
            record["sha1"] = hashlib.sha1(b"unread:" + item.key.encode()).hexdigest()
            raise ImageError(item.error)
        rgb = load_rgb(item.data, name=item.member, max_bytes=_WORKER_CONFIG.max_file_bytes)
    except ImageError as exc:
        if record["status"] == "ok":
            record.update(status="unreadable", reason=str(exc))
        else:
            record["reason"] += f"; also unreadable: {exc}"
        return record
    height, width = rgb.shape[:2]
    record.update(width=width, height=height)
    detections = _DETECTOR.detect(rgb)
    record["n_faces"] = len(detections)
    face = select_face(detections, "main", (width, height))
    if face is None:
        if record["status"] == "ok":
            record.update(status="no_face", reason="MTCNN found no face")
        return record
    record.update(x1=face.box[0], y1=face.box[1], x2=face.box[2], y2=face.box[3], det_score=face.score)
    record["landmarks"] = [float(v) for point in face.landmarks for v in point]
    if record["status"] != "ok":
        return record
    aligned = align_face(rgb, face.landmarks, size=_WORKER_CONFIG.crop_size)
    ok, encoded = cv2.imencode(
        ".jpg",
        cv2.cvtColor(aligned.image, cv2.COLOR_RGB2BGR),
        [cv2.IMWRITE_JPEG_QUALITY, _WORKER_CONFIG.jpeg_quality],
    )
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {item.key}")
    record["crop"] = crop_path_for(item.key)
    atomic_write_bytes(_WORKER_OUT / record["crop"], encoded.tobytes())
    return record


# ----------------------------------------------------------------------------------------------------------------
# The journal of finished records
# ----------------------------------------------------------------------------------------------------------------


def _journal_frame(records: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records, columns=COLUMNS)
    for column in ("age", "gender", "race", "width", "height", "n_faces"):
        frame[column] = frame[column].astype("Int64")
    for column in ("x1", "y1", "x2", "y2", "det_score"):
        frame[column] = frame[column].astype("float64")
    return frame


def read_journal(out_dir: Path) -> pd.DataFrame:
    chunks = sorted((out_dir / JOURNAL_DIR).glob("journal-*.parquet"))
    if not chunks:
        return _journal_frame([])
    frame = pd.concat([pd.read_parquet(c) for c in chunks], ignore_index=True)
    return frame.drop_duplicates("key", keep="last")


def _check_out_dir(out_dir: Path, sources: list[Path]) -> None:
    """Create ``out_dir``, or say at once why it cannot be (a file, under a file, not writable, inside a source)."""
    for source in sources:
        if source.is_dir() and out_dir.resolve().is_relative_to(source.resolve()):
            raise FaceageError(f"{out_dir} is inside the source folder {source}: its crops would be read back as "
                               "sources; choose an --out folder outside it")  # fmt: skip
    if out_dir.exists() and not out_dir.is_dir():
        raise FaceageError(f"{out_dir}: is a file; give a folder for --out")
    try:
        make_writable_folder(out_dir)
    except OSError as exc:
        raise FaceageError(f"{out_dir}: cannot be written ({exc.strerror or exc}); choose another --out") from None


def _check_config(out_dir: Path, config: PrepareConfig) -> None:
    path = out_dir / JOURNAL_DIR / "config.json"
    # the read limit bounds what is read, not how a face is prepared: a resumed run may change it
    wanted = {key: value for key, value in asdict(config).items() if key != "max_file_bytes"}
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous.get("alignment") in SAME_ALIGNMENT:  # an earlier name of the same alignment
            previous["alignment"] = ALIGNMENT_VERSION
        if previous != wanted:
            raise FaceageError(
                f"{out_dir} was prepared with other settings ({previous}); to keep that work use the same settings, "
                f"or choose a new --out folder"
            )
    else:
        atomic_write_text(path, json.dumps(wanted, indent=1))


# ----------------------------------------------------------------------------------------------------------------
# The whole run
# ----------------------------------------------------------------------------------------------------------------


def prepare(
    sources: list[Path],
    out_dir: Path,
    *,
    bins: str = "0-20,21-26,27-35,36-50,51+",
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    workers: int = 2,
    config: PrepareConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PrepareSummary:
    """Run (or resume) preparation; ``progress(done, total)`` is called as files finish."""
    config = config or PrepareConfig()
    out_dir = Path(out_dir)
    total = count_items(sources)
    _check_out_dir(out_dir, sources)
    _check_config(out_dir, config)
    # temp files left by a prepare run that was killed mid-write (only prepare's own folders)
    stale = [*out_dir.glob(".*.tmp"), *(out_dir / JOURNAL_DIR).glob(".*.tmp"), *(out_dir / "crops").glob("*/.*.tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    journal = read_journal(out_dir)
    done_keys = set(journal["key"])
    resumed = len(done_keys)
    if progress:
        progress(min(resumed, total), total)

    started = time.perf_counter()
    pending: list[dict] = []
    chunk_no = len(list((out_dir / JOURNAL_DIR).glob("journal-*.parquet")))
    processed = 0

    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal chunk_no, pending, last_flush
        if pending:
            path = out_dir / JOURNAL_DIR / f"journal-{chunk_no:05d}.parquet"
            atomic_write_parquet(_journal_frame(pending), path)
            chunk_no += 1
            pending = []
        last_flush = time.monotonic()

    def todo() -> Iterator[SourceItem]:
        for item in iter_items(sources, config.max_file_bytes):
            if item.key not in done_keys:
                yield item

    workers = max(1, int(workers))
    context = mp.get_context("spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=(config, out_dir)) as pool:
        in_flight: deque = deque()

        def collect_oldest() -> None:
            nonlocal processed
            pending.append(in_flight.popleft().get())
            processed += 1
            if len(pending) >= JOURNAL_CHUNK or time.monotonic() - last_flush > JOURNAL_SECONDS:
                flush()
            if progress:
                progress(resumed + processed, total)

        for item in todo():
            in_flight.append(pool.apply_async(process_item, (item,)))
            while len(in_flight) >= workers * 16:  # bounded: the archive never sits in memory
                collect_oldest()
        while in_flight:
            collect_oldest()
        flush()
    seconds = time.perf_counter() - started

    manifest = finalize(out_dir, bins=bins, seed=seed, fractions=fractions, config=config, sources=sources)
    status_counts = {s: int(n) for s, n in manifest["status"].value_counts().items()}
    split_counts = {s: int(n) for s, n in manifest.loc[manifest["split"] != "", "split"].value_counts().items()}
    return PrepareSummary(out_dir, len(manifest), processed, resumed, seconds, status_counts, split_counts)


def finalize(
    out_dir: Path, *, bins: str, seed: int, fractions, config: PrepareConfig, sources: list[Path]
) -> pd.DataFrame:
    """Journal → manifest: mark duplicate content, assign bins and split, write manifest, quality report, meta."""
    manifest = read_journal(out_dir).sort_values("key", kind="stable").reset_index(drop=True)
    # Duplicate content: the first copy (by key) stays, later ones are reported, whatever their own status.
    readable = manifest["status"].isin(["ok", "no_face"])
    first = manifest[readable].drop_duplicates("sha1", keep="first")
    original_of = dict(zip(first["sha1"], first["key"], strict=False))
    duplicate = readable & manifest["sha1"].map(original_of).ne(manifest["key"]) & manifest["sha1"].isin(original_of)
    manifest.loc[duplicate, "reason"] = "same content as " + manifest.loc[duplicate, "sha1"].map(original_of)
    manifest.loc[duplicate, "status"] = "duplicate"

    usable = manifest["status"] == "ok"
    train_ages = None
    if bins.strip().startswith("quantile"):
        # quantile bins from the would-be training split of the default bins (no peeking at val/test)
        provisional = assign_split(manifest.loc[usable, "age"], manifest.loc[usable, "sha1"], AgeBins.default(), seed)
        train_ages = manifest.loc[provisional[provisional == "train"].index, "age"].to_numpy(dtype=float)
    age_bins = AgeBins.parse(bins, train_ages=train_ages)
    ages = manifest.loc[usable, "age"].astype(int)
    manifest["bin"] = ""
    manifest.loc[usable, "bin"] = [age_bins.labels[i] for i in np.atleast_1d(age_bins.index(ages.to_numpy()))]
    manifest["split"] = ""
    manifest.loc[usable, "split"] = assign_split(ages, manifest.loc[usable, "sha1"], age_bins, seed, fractions)

    atomic_write_parquet(manifest[COLUMNS], out_dir / MANIFEST)
    quality = quality_report(manifest)
    atomic_write_bytes(out_dir / QUALITY, quality.to_csv(index=False).encode())
    meta = {
        "faceage_version": __version__,
        "bins": age_bins.spec,
        "seed": seed,
        "fractions": list(fractions),
        "crop": asdict(config),
        "sources": sorted(manifest["source"].unique().tolist()),
        # where the originals were, so that evaluation can read them again (e.g. to run another estimator on them)
        "source_paths": {Path(p).name: str(Path(p).resolve()) for p in sources},
        "counts": {s: int((manifest["status"] == s).sum()) for s in manifest["status"].unique()},
    }
    atomic_write_text(out_dir / META, json.dumps(meta, indent=1))
    return manifest
