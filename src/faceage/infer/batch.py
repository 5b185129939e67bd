"""``faceage predict SOURCE --engine ray``: the rows of :mod:`faceage.infer.predict`, computed on Ray Data.

Needs the ``scale`` extra (``pip install 'faceage[scale]'``: Ray Data). Without an address a Ray is started on this
machine for the run; with ``--ray-address auto`` (or ``ray://host:10001``) the run joins an existing cluster, whose
nodes need the same faceage installed (the model file itself travels with the job).

The plan Ray Data runs:

1. the photos (listed here by :func:`faceage.infer.inputs.expand_inputs`, or a Parquet / CSV table's ``path`` column
   read by Ray Data itself) are cut into blocks of :data:`PHOTOS_PER_BLOCK` and read in Ray tasks
   (:func:`read_photos`, :data:`READ_CPUS` of a CPU each): a photo that cannot be read becomes an error, never a
   failed job;
2. a pool of actors (``map_batches`` with :class:`EstimateAges`, one CPU each), each holding one
   :class:`~faceage.infer.estimator.AgeEstimator` (the networks load once per worker), decodes each photo and
   estimates its ages. Decoding happens here rather than in the reading tasks so that what passes through Ray's
   object store is the compressed file, not the decoded photo (many times larger: up to 150 MB at the 50-megapixel
   limit);
3. the rows come back to this process in input order (``--out`` a .csv, .jsonl or .parquet file, or the table on
   screen), or each block is written as Parquet by the workers straight into a folder or URI prefix (``--out
   results/``: Ray Data's ``write_parquet``; the rows of a block in input order, the files in no particular one).

Retries of failed tasks, restarts of lost actors, back-pressure between the stages and the spreading of work over the
nodes are Ray Data's. Rows and their values are those of plain ``faceage predict`` (the same reading code,
:func:`faceage.infer.inputs.read_input`, and the same estimator set-up, :func:`faceage.infer.predict.worker_estimator`).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import faceage
from faceage.errors import FaceageError, ImageError
from faceage.images import DEFAULT_MAX_BYTES
from faceage.infer.inputs import (
    PATH_COLUMN,
    STDIN,
    TABLE_SUFFIXES,
    check_path_column,
    csv_options,
    expand_inputs,
    is_uri,
    read_input,
    read_photo_bytes,
    skipped_note,
)
from faceage.infer.predict import PredictSummary, rows_for, rows_from_arrow, rows_to_arrow, worker_estimator
from faceage.weights import model_path

READ_CPUS = 0.25  # reading a photo's bytes is a small part of its cost: four reading tasks share a CPU
ESTIMATE_CPUS = 1
PHOTOS_PER_BLOCK = 8  # photos per read task, and per hand-over to an actor (fewer, larger tasks: less overhead)
MAX_INPUT_BLOCKS = 10_000
ROWS_PER_FILE = 10_000  # Parquet files written into a folder hold at least this many rows (the last one fewer)
SCALE_EXTRA = "pip install 'faceage[scale]'"


@dataclass(frozen=True)
class RayOptions:
    """Where the run goes: ``address`` None starts a Ray on this machine (``workers`` + 1 CPUs, so reading always has
    one); "auto" or "ray://host:port" joins a cluster. ``workers``: estimation actors; None: every CPU here, or on a
    cluster every CPU but an eighth left for reading and decoding."""

    address: str | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise FaceageError(f"--workers must be at least 1, not {self.workers}")


@dataclass(frozen=True)
class SharedModel:
    """A model file as it travels to the actors: its name and its contents, put once into Ray's object store (a
    cluster's nodes need not have the file)."""

    name: str
    contents: object  # ray.ObjectRef of the file's bytes

    @classmethod
    def put(cls, ray, model: str | Path | None) -> SharedModel:
        path = model_path(model)
        try:
            return cls(path.name, ray.put(path.read_bytes()))
        except OSError as exc:
            raise FaceageError(f"{path}: the model cannot be read ({exc.strerror or exc})") from None

    def write(self, folder: Path) -> Path:
        import ray

        path = Path(folder) / self.name
        path.write_bytes(ray.get(self.contents))
        return path


def read_photos(batch: dict[str, np.ndarray], max_bytes: int) -> dict[str, list]:
    """A Ray task: each photo's bytes, or none and the error row's text (``unreadable: <reason>``)."""
    contents, errors = [], []
    for path in batch[PATH_COLUMN]:
        try:
            contents.append(read_photo_bytes(str(path), max_bytes))
            errors.append("")
        except ImageError as exc:
            contents.append(b"")
            errors.append(f"unreadable: {exc}")
    return {PATH_COLUMN: [str(p) for p in batch[PATH_COLUMN]], "data": contents, "error": errors}


class EstimateAges:
    """A Ray actor's callable: one estimator per actor, the rows of :func:`faceage.infer.predict.rows_for` per photo
    as an Arrow table (:func:`faceage.infer.predict.arrow_schema`)."""

    def __init__(self, model: SharedModel, bins: str | None, min_face: int | None, max_bytes: int, cropped: bool,
                 version: str):  # fmt: skip
        if version != faceage.__version__:
            raise FaceageError(f"this Ray worker runs faceage {faceage.__version__}, the driver {version}; install "
                               "the same faceage on every node")  # fmt: skip
        self.folder = tempfile.TemporaryDirectory(prefix="faceage-model-")
        self.estimator = worker_estimator(str(model.write(Path(self.folder.name))), bins, min_face, max_bytes)
        self.cropped = cropped

    def __call__(self, batch: dict[str, np.ndarray]):
        rows: list[dict] = []
        estimator = self.estimator
        for path, data, error in zip(batch[PATH_COLUMN], batch["data"], batch["error"], strict=True):
            if error:
                rows.extend(rows_for(str(path), None, str(error)))
                continue
            try:
                rgb = read_input(str(path), bytes(data), max_pixels=estimator.max_pixels, max_bytes=estimator.max_bytes)
                rows.extend(rows_for(str(path), estimator.predict(rgb, cropped=self.cropped)))
            except ImageError as exc:
                rows.extend(rows_for(str(path), None, f"unreadable: {exc}"))
        return rows_to_arrow(rows)


def _check_reachable(address: str, seconds: float = 5.0) -> None:
    """A ``host:port`` or ``ray://host:port`` address that nothing answers on is refused at once (Ray itself keeps
    retrying for minutes); "auto" is left to Ray, which finds a cluster started on this machine."""
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=seconds).close()
    except OSError as exc:
        raise FaceageError(f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one there with 'ray "
                           "start --head', give its address, or leave --ray-address out to run on a Ray started "
                           "here") from None  # fmt: skip


def _import_ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise FaceageError(f"--engine ray needs Ray Data, which is not installed: {SCALE_EXTRA}") from None
    return ray


class RayRun:
    """A Ray session for one run: started on this machine or joined (``with RayRun(options) as run:``); a Ray this
    process had already started (a program using the API) is used as it is and left running."""

    def __init__(self, options: RayOptions):
        self.options = options
        self.ray = _import_ray()
        self.started = False

    def __enter__(self) -> RayRun:
        ray, options = self.ray, self.options
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.WARNING)
        if not ray.is_initialized():
            settings = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False}
            try:
                if options.address is None:
                    workers = options.workers or os.cpu_count() or 1
                    ray.init(num_cpus=max(os.cpu_count() or 1, workers + 1), **settings)
                else:
                    _check_reachable(options.address)
                    ray.init(address=options.address, **settings)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"the Ray cluster at {options.address}" if options.address else "a local Ray"
                hint = ("check the address, or leave --ray-address out to run on a Ray started here" if options.address
                        else "see the message above")  # fmt: skip
                raise FaceageError(f"could not start {where} ({str(exc).splitlines()[0]}); {hint}") from None
            self.started = True
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the command shows its own
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # which Ray Data warns about
        context.print_on_execution_start = False
        return self

    def __exit__(self, *exc) -> None:
        if self.started:
            self.ray.shutdown()

    def workers(self) -> int:
        """Estimation actors: as asked, else every CPU (a local Ray) or all but an eighth (a cluster); refused when
        the cluster would have no CPU left for reading."""
        cpus = float(self.ray.cluster_resources().get("CPU", 0))
        asked = self.options.workers
        if asked is None:
            asked = int(cpus) - 1 if self.options.address is None else int(cpus - max(1.0, cpus / 8))
        if asked * ESTIMATE_CPUS + READ_CPUS > cpus:
            raise FaceageError(f"--workers {asked} leaves no CPU for reading photos on a Ray cluster of {cpus:g} CPUs;"
                               f" give at most {int(cpus - READ_CPUS) // ESTIMATE_CPUS}")  # fmt: skip
        return max(1, asked)

    def dataset(self, inputs: list[str], *, model: str | Path | None, bins: str | None, cropped: bool,
                min_face: int | None, max_bytes: int, notes: list[str] | None,
                ordered: bool):  # fmt: skip
        """The plan (photos → read in tasks → decoded and estimated in actors) and the number of photos it reads."""
        ray = self.ray
        workers = self.workers()
        ray.data.DataContext.get_current().execution_options.preserve_order = ordered
        if len(inputs) == 1 and Path(inputs[0]).suffix.lower() in TABLE_SUFFIXES and Path(inputs[0]).is_file():
            table = _read_table(ray, inputs[0])
            count = table.count()  # reads the table once; the plan below reads it again as it runs
            photos = table.repartition(input_blocks(count, workers))
        else:
            skipped: list[str] = []
            paths = expand_inputs(inputs, skipped)
            if skipped and notes is not None:
                notes.append(skipped_note(skipped))
            count = len(paths)
            photos = ray.data.from_items(
                [{PATH_COLUMN: p} for p in paths], override_num_blocks=input_blocks(count, workers)
            )
        read = photos.map_batches(read_photos, batch_size=None, num_cpus=READ_CPUS, batch_format="numpy",
                                  fn_kwargs={"max_bytes": max_bytes})  # fmt: skip
        args = (SharedModel.put(ray, model), bins, min_face, max_bytes, cropped, faceage.__version__)
        estimated = read.map_batches(EstimateAges, fn_constructor_args=args, batch_size=1, num_cpus=ESTIMATE_CPUS,
                                        compute=ray.data.ActorPoolStrategy(size=workers),
                                        batch_format="numpy")  # fmt: skip
        return estimated, count


def input_blocks(photos: int, workers: int) -> int:
    """Blocks to cut the list of photos into: PHOTOS_PER_BLOCK each, but at least four per worker (a short run keeps
    every worker busy) and one photo each at most; measured in benchmarks/scale.py."""
    return max(1, min(photos, max(4 * workers, -(-photos // PHOTOS_PER_BLOCK)), MAX_INPUT_BLOCKS))


def _read_table(ray, source: str):
    """A CSV / Parquet table's ``path`` column, read by Ray Data (a table of millions of photos stays off this
    process); the column is checked here first."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    parquet = source.lower().endswith(".parquet")
    try:
        columns = pq.read_schema(source).names if parquet else pa_csv.open_csv(source).schema.names
    except (OSError, pa.ArrowInvalid) as exc:
        raise FaceageError(f"{source}: cannot be read as a table of photos ({str(exc).splitlines()[0]}); give a "
                           f".csv or .parquet table with a '{PATH_COLUMN}' column") from None  # fmt: skip
    check_path_column(source, columns)
    if parquet:
        return ray.data.read_parquet(source).select_columns([PATH_COLUMN])
    return ray.data.read_csv(source, convert_options=csv_options(include_columns=[PATH_COLUMN]))


def _check_request(inputs: list[str], model: str | Path | None, bins: str | None, min_face: int | None,
                   max_bytes: int) -> None:  # fmt: skip
    """What the workers would refuse, refused here before Ray starts."""
    if STDIN in inputs:
        raise FaceageError("--engine ray reads photos in its workers and cannot take standard input (-); save it to a "
                           "file, or leave --engine out")  # fmt: skip
    if max_bytes < 1:
        raise FaceageError(f"the limit per image must be at least 1 byte, not {max_bytes}")
    worker_estimator(model_path(model), bins, min_face, max_bytes)  # the model file, bins and face size
    _import_ray()


def predict_rows(inputs: list[str], options: RayOptions | None = None, *, model: str | Path | None = None,
                 bins: str | None = None, cropped: bool = False, min_face: int | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES,
                 progress: Callable[[int, int], None] | None = None,
                 notes: list[str] | None = None) -> Iterator[dict]:  # fmt: skip
    """Rows for every input, in input order, as :func:`faceage.infer.predict.predict_paths` gives them."""
    _check_request(inputs, model, bins, min_face, max_bytes)
    with RayRun(options or RayOptions()) as run:
        dataset, count = run.dataset(inputs, model=model, bins=bins, cropped=cropped, min_face=min_face,
                                     max_bytes=max_bytes, notes=notes, ordered=True)  # fmt: skip
        done = 0
        for table in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            rows = rows_from_arrow(table)
            yield from rows
            done += sum(1 for row in rows if row["face"] in ("", 0))
            if progress:
                progress(done, count)


def is_folder_output(out: str) -> bool:
    """Whether ``--out`` names a folder (or URI prefix) for Ray Data's Parquet files rather than one file."""
    return out.endswith("/") or is_uri(out) or Path(out).is_dir() or not Path(out).suffix


def write_parquet_folder(
    inputs: list[str],
    out: str,
    options: RayOptions | None = None,
    *,
    model: str | Path | None = None,
    bins: str | None = None,
    cropped: bool = False,
    min_face: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    notes: list[str] | None = None,
) -> PredictSummary:
    """Rows written by the workers as Parquet files into the empty (or new) folder or URI prefix ``out``."""
    import pyarrow.dataset as pads

    _check_request(inputs, model, bins, min_face, max_bytes)
    filesystem, root = _empty_output(out)
    with RayRun(options or RayOptions()) as run:
        dataset, _ = run.dataset(inputs, model=model, bins=bins, cropped=cropped, min_face=min_face,
                                 max_bytes=max_bytes, notes=notes, ordered=False)  # fmt: skip
        dataset.write_parquet(root, filesystem=filesystem, min_rows_per_file=ROWS_PER_FILE)  # the folder was empty
    written = pads.dataset(root, filesystem=filesystem, format="parquet").to_table(columns=["face", "error"])
    faces, errors = written.column("face").to_pylist(), written.column("error").to_pylist()
    first = [error for face, error in zip(faces, errors, strict=True) if face in (None, 0)]
    return PredictSummary(inputs=len(first), faces=sum(1 for error in errors if error is None),
                          no_face=sum(1 for error in first if error == "no_face"),
                          unreadable=sum(1 for error in first if error and error.startswith("unreadable")))  # fmt: skip


def _empty_output(out: str):
    """The file system and path of ``out``, checked to be an empty or new folder before any work."""
    import pyarrow.fs as pafs

    try:
        filesystem, root = pafs.FileSystem.from_uri(out) if is_uri(out) else (pafs.LocalFileSystem(),
                                                                               str(Path(out).resolve()))  # fmt: skip
        info = filesystem.get_file_info(root)
        if info.type == pafs.FileType.File:
            raise FaceageError(f"{out}: is a file; give a folder (or a file name ending in .parquet, .csv or .jsonl)")
        if info.type == pafs.FileType.Directory and filesystem.get_file_info(pafs.FileSelector(root)):
            raise FaceageError(f"{out}: the folder is not empty; give a new or empty folder, so that no earlier "
                               "result is mixed in or overwritten")  # fmt: skip
        filesystem.create_dir(root, recursive=True)
    except OSError as exc:
        raise FaceageError(f"{out}: results cannot be written there ({str(exc).splitlines()[0]}); choose another "
                           "--out") from None  # fmt: skip
    return filesystem, root
