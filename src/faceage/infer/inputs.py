"""What ``faceage predict`` reads: the inputs named on its command line turned into photos, and each photo's bytes.

An input is a photo (a path, or a URI such as ``s3://bucket/a.jpg`` or ``file:///data/a.jpg`` that pyarrow's file
systems can open), a folder or URI prefix (searched recursively for :data:`IMAGE_SUFFIXES`, sorted), ``-`` for
standard input, or a list of photos: a text file (``.txt``, ``.lst``: one photo per line; blank lines and lines
starting with ``#`` are passed over) or a table (``.csv``, ``.parquet``) with a ``path`` column. The entries of a list
are photos as given (a folder among them is an unreadable row, not searched). Both engines (local processes and Ray
Data) read through :func:`read_input`, so a photo gives the same row, or the same error, on either.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from faceage.errors import FaceageError, ImageError, UnsupportedImageError
from faceage.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, check_size, load_rgb, read_file

LIST_SUFFIXES = {".txt", ".lst"}
TABLE_SUFFIXES = {".csv", ".parquet"}
PATH_COLUMN = "path"
STDIN = "-"
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(item: str) -> bool:
    """``s3://...``, ``gs://...``, ``file:///...``: read through pyarrow's file systems, not as a local path."""
    return bool(_URI.match(item))


def expand_inputs(inputs: list[str], skipped: list[str] | None = None) -> list[str]:
    """Photos in the order given: folders and URI prefixes searched recursively (sorted), lists and tables read, ``-``
    kept for standard input. What the folders hold that is not taken (no image suffix, links to folders, which are not
    followed) is listed in ``skipped``; missing or unreadable photos stay, to become error rows."""
    out: list[str] = []
    for item in inputs:
        if item == STDIN:
            out.append(STDIN)
        elif is_uri(item):
            out.extend(_uri_photos(item, skipped))
        elif _is_dir(Path(item)):
            out.extend(str(p) for p in _images_in(Path(item), skipped))
        elif Path(item).suffix.lower() in LIST_SUFFIXES | TABLE_SUFFIXES and _is_file(Path(item)):
            out.extend(read_photo_list(item))
        else:
            out.append(item)
    if not out:
        raise FaceageError("no input images: give files, folders with images, a list of photos (.txt, or .csv / "
                           ".parquet with a 'path' column) or - for standard input")  # fmt: skip
    return out


def skipped_note(skipped: list[str]) -> str:
    """What to tell the user about the files :func:`expand_inputs` passed over."""
    suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
    return (f"{len(skipped)} file(s) in the folders were not read: no image suffix ({suffixes}) or a link to a "
            f"folder, e.g. {skipped[0]}")  # fmt: skip


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name too long for the system: an error row
        return False


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def _images_in(folder: Path, skipped: list[str] | None = None) -> list[Path]:
    """Files with an image suffix under ``folder`` (sorted), and the folders that cannot be listed (a path over the
    system's limit, no permission), which become unreadable rows; the rest goes to ``skipped``."""
    found: list[Path] = []
    unlisted: list[Path] = []
    passed_over: list[str] = []
    for root, folders, files in os.walk(folder, onerror=lambda exc: unlisted.append(Path(exc.filename))):
        for name in files:
            entry = Path(root) / name
            (found.append(entry) if entry.suffix.lower() in IMAGE_SUFFIXES else passed_over.append(str(entry)))
        passed_over.extend(str(Path(root) / name) for name in folders if os.path.islink(Path(root) / name))
    if skipped is not None:
        skipped.extend(sorted(passed_over))
    return sorted(found + [p for p in unlisted if p != folder])


def read_photo_list(source: str) -> list[str]:
    """The photos a list names: a text file, one per line, or a CSV / Parquet table's ``path`` column."""
    suffix = Path(source).suffix.lower()
    try:
        if suffix in LIST_SUFFIXES:
            lines = Path(source).read_text(encoding="utf-8").splitlines()
            return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        table = _read_table(source)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FaceageError(f"{source}: cannot be read as a list of photos ({exc}); give a text file with one photo "
                           "per line, or a .csv / .parquet table with a 'path' column") from None  # fmt: skip
    check_path_column(source, table.column_names)
    column = table.column(PATH_COLUMN)
    if column.null_count:
        raise FaceageError(f"{source}: {column.null_count} row(s) have no '{PATH_COLUMN}'; give a photo on every row")
    return [str(value) for value in column.to_pylist()]


def check_path_column(source: str, columns: list[str]) -> None:
    """A table of photos must have a ``path`` column; the message names the columns it has."""
    if PATH_COLUMN not in columns:
        raise FaceageError(f"{source}: has no '{PATH_COLUMN}' column (it has {', '.join(columns) or 'none'}); name the "
                           f"column of photos '{PATH_COLUMN}'")  # fmt: skip


def csv_options(**more):
    """How a CSV table of photos is read: the ``path`` column as text ("001.jpg" stays a name, not a number)."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    return pa_csv.ConvertOptions(column_types={PATH_COLUMN: pa.string()}, **more)


def _read_table(source: str):
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    if Path(source).suffix.lower() == ".parquet":
        return pq.read_table(source)
    options = csv_options()
    try:
        return pa_csv.read_csv(source, convert_options=options)
    except pa.ArrowInvalid as exc:
        raise ValueError(str(exc).splitlines()[0]) from None


def _uri_photos(uri: str, skipped: list[str] | None) -> list[str]:
    """A URI as given if it names a file (or nothing: an error row then), or the photos under it if it is a prefix."""
    import pyarrow.fs as pafs

    try:
        filesystem, root = pafs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(root)
        if info.type != pafs.FileType.Directory:
            return [uri]
        entries = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    except (OSError, ValueError, ImportError) as exc:
        raise FaceageError(f"{uri}: cannot be listed ({str(exc).splitlines()[0]}); check the URI and the access "
                           "rights of this machine") from None  # fmt: skip
    prefix = _scheme_prefix(uri)
    files = sorted(e.path for e in entries if e.type == pafs.FileType.File)
    photos = [f for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES]
    if skipped is not None:
        skipped.extend(prefix + f for f in files if Path(f).suffix.lower() not in IMAGE_SUFFIXES)
    return [prefix + f for f in photos]


def _scheme_prefix(uri: str) -> str:
    """``s3://`` for ``s3://bucket/key``, ``file://`` for ``file:///data``: what turns a file system's path back into
    a URI."""
    return uri[: _URI.match(uri).end()]


def read_input(path: str, data=None, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:  # fmt: skip
    """One photo as an RGB array (EXIF orientation applied), or :class:`ImageError` saying why not: ``data`` when
    given (standard input, bytes :func:`read_photo_bytes` read elsewhere, or pixels), else the photo ``path``
    names."""
    if data is None:
        data = read_photo_bytes(path, max_bytes)
    return load_rgb(data, name=path, max_pixels=max_pixels, max_bytes=max_bytes)


def read_photo_bytes(path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of the photo ``path`` names (a URI through pyarrow, a local path through
    :func:`faceage.images.read_file`: a regular file of at most ``max_bytes``), or :class:`ImageError` saying why
    not."""
    data = _read_uri(path, max_bytes) if is_uri(path) else read_file(Path(path), path, max_bytes)
    if not data:
        raise UnsupportedImageError(f"{path}: empty file (0 bytes)")
    return data


def _read_uri(uri: str, max_bytes: int) -> bytes:
    import pyarrow.fs as pafs

    try:
        filesystem, path = pafs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise ImageError(f"{uri}: no such file")
        if info.type == pafs.FileType.Directory:
            raise ImageError(f"{uri}: is a folder, not an image file")
        if info.size is not None:
            check_size(info.size, uri, max_bytes)  # refused unread
        with filesystem.open_input_stream(path) as stream:
            data = stream.read(max_bytes + 1)  # one byte more than allowed: a larger file is refused as such
    except ImageError:
        raise
    except (OSError, ValueError) as exc:  # pyarrow's errors (permission, network) are OSError subclasses
        raise ImageError(f"{uri}: cannot be read ({str(exc).splitlines()[0]})") from None
    return data
