"""Where files go and how they are written, dependency-free (every room shares them): folders checked before any
work, and atomic writes (a temporary file beside the target, renamed over it: never a half-written file)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


class Replacement:
    """A temporary file beside ``target`` (``.<name>.<tag>.tmp``, a random tag unless given; the usual permissions)
    that :meth:`commit` renames over the target, or :meth:`discard` removes."""

    def __init__(self, target: Path, tag: str | None = None):
        self.target = Path(target)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        if tag is None:
            fd, name = tempfile.mkstemp(dir=self.target.parent, prefix=f".{self.target.name}.", suffix=".tmp")
            os.close(fd)
            self.path = Path(name)
        else:
            self.path = self.target.with_name(f".{self.target.name}.{tag}.tmp")
            self.path.touch()
        os.chmod(self.path, 0o666 & ~_UMASK)  # mkstemp makes files private; give them the usual permissions

    def commit(self) -> None:
        os.replace(self.path, self.target)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A :class:`Replacement` of ``path`` for the ``with`` block to write: it becomes ``path`` when the block ends,
    and is removed if the block fails."""
    replacement = Replacement(path)
    try:
        yield replacement.path
        replacement.commit()
    except BaseException:
        replacement.discard()
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`replacing`."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def make_writable_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) and check that a file can be written in it, before any work that would
    write there; an ``OSError`` says why not."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".faceage-write-test-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()


def user_cache_dir() -> Path:
    """The folder for files faceage can always make again (the detector's built graphs): ``$FACEAGE_CACHE_DIR`` if
    set, else ``$XDG_CACHE_HOME/faceage``, else ``~/.cache/faceage``."""
    if os.environ.get("FACEAGE_CACHE_DIR"):
        return Path(os.environ["FACEAGE_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "faceage"
