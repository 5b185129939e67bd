"""Data sources: UTKFace archives (.tar.gz, read as a stream) and folders, in any mix.

Each file becomes a :class:`SourceItem` whose ``key`` ("<source name>:<path inside>") is stable across machines and
runs. Archives are read member by member in stream mode, so memory holds one image at a time, never the archive.
A file or member over ``max_bytes`` (default :data:`faceage.images.DEFAULT_MAX_BYTES`) is not read, and a folder file
that cannot be read (permissions, not a regular file) is not fatal: either comes back with its ``error`` set, and
becomes an "unreadable" row with that reason. Nothing is skipped without a row: archive members that are links,
devices or FIFOs, and folder entries that are dangling links, FIFOs, sockets or devices, come back with ``error`` set
too; only folders (and links to folders, which are not followed) are not items.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from faceage.errors import ImageError, SourceError
from faceage.images import DEFAULT_MAX_BYTES, read_file

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")


@dataclass(frozen=True)
class SourceItem:
    source: str  # name of the archive or folder, e.g. "UTKFace.tar.gz"
    member: str  # path inside it, POSIX separators, e.g. "UTKFace/1_0_0_2017….jpg.chip.jpg"
    data: bytes
    error: str = ""  # why ``data`` could not be read (then empty)

    @property
    def key(self) -> str:
        return f"{self.source}:{self.member}"


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def check_sources(paths: list[Path]) -> list[Path]:
    """Validate source paths up front so a typo fails before any work is done."""
    if not paths:
        raise SourceError("no source given: pass UTKFace.tar.gz, its folder, or part1/2/3 archives or folders")
    seen: dict[str, Path] = {}
    for path in paths:
        if not path.exists():
            raise SourceError(f"{path}: no such file or folder; give the UTKFace archive or an extracted folder")
        if not (path.is_dir() or _is_archive(path)):
            raise SourceError(f"{path}: not a folder or a .tar.gz/.tar archive; give UTKFace.tar.gz or a folder")
        if path.name in seen:
            raise SourceError(f"two sources are both named '{path.name}' ({seen[path.name]} and {path}); rename one")
        seen[path.name] = path
    return paths


def iter_items(paths: list[Path], max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[SourceItem]:
    """Every regular file of every source, archives streamed, folders in sorted order; files over ``max_bytes`` and
    files that cannot be read come with ``error`` set instead of their data."""
    for path in check_sources(paths):
        if path.is_dir():
            for file in _folder_entries(path):
                member = file.relative_to(path).as_posix()
                try:
                    yield SourceItem(path.name, member, read_file(file, member, max_bytes))
                except ImageError as exc:
                    yield SourceItem(path.name, member, b"", str(exc))
        else:
            yield from _iter_archive(path, max_bytes)


def _iter_archive(path: Path, max_bytes: int) -> Iterator[SourceItem]:
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                if member.isdir():
                    continue
                if not member.isfile():
                    yield SourceItem(path.name, member.name, b"", f"{member.name}: {_member_kind(member)} in the "
                                     "archive, not a file: not read")  # fmt: skip
                    continue
                if member.size > max_bytes:  # not read: the stream skips its data
                    yield SourceItem(path.name, member.name, b"", f"{member.name}: {member.size:,} bytes is over the "
                                     f"limit of {max_bytes:,} per image")  # fmt: skip
                    continue
                handle = tar.extractfile(member)
                data = handle.read(max_bytes + 1) if handle is not None else b""
                yield SourceItem(path.name, member.name, data)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise SourceError(f"{path}: cannot read the archive ({exc}); is the download complete?") from None


def _folder_entries(folder: Path) -> list[Path]:
    """Every entry under ``folder`` that is not a folder, sorted (dangling links and FIFOs included), and the folders
    that cannot be listed (no permission, a path over the system's limit): each becomes an item."""
    import os

    entries: list[Path] = []
    for root, folders, files in os.walk(folder, onerror=lambda exc: entries.append(Path(exc.filename))):
        entries.extend(Path(root) / name for name in files)
        entries.extend(Path(root) / name for name in folders if os.path.islink(Path(root) / name))  # not followed
    return sorted(entries)


def _member_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"a symbolic link to {member.linkname}"
    if member.islnk():
        return f"a hard link to {member.linkname}"
    if member.isfifo():
        return "a FIFO"
    if member.ischr() or member.isblk():
        return "a device"
    return "not a regular file"


def count_items(paths: list[Path]) -> int:
    """Number of items in the sources (reads archive headers; used for the progress bar)."""
    total = 0
    for path in check_sources(paths):
        if path.is_dir():
            total += len(_folder_entries(path))
        else:
            try:
                with tarfile.open(path, mode="r|*") as tar:
                    total += sum(1 for m in tar if not m.isdir())
            except (tarfile.TarError, EOFError, OSError) as exc:
                raise SourceError(f"{path}: cannot read the archive ({exc}); is the download complete?") from None
    return total
