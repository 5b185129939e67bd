"""Small checks on where files go, dependency-free (the predict and prepare paths share them)."""

from __future__ import annotations

import os
from pathlib import Path


def make_writable_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) and check that a file can be written in it, before any work that would
    write there; an ``OSError`` says why not."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".faceage-write-test-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()
