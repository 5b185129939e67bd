"""The manifest: one row per source image (``DATA_DIR/manifest.parquet``), and the data-quality report.

Columns: key, source, member, sha1, status (ok / no_face / unreadable / bad_name / duplicate), reason, age, gender,
race, datetime, width, height, n_faces, x1, y1, x2, y2, det_score, landmarks (10 numbers: x0, y0, … x4, y4), crop (path
relative to DATA_DIR), bin, split. Gender and race are kept for fairness audits only.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd

from faceage.errors import FaceageError

MANIFEST = "manifest.parquet"
QUALITY = "quality.csv"
META = "meta.json"
STATUSES = ("ok", "no_face", "unreadable", "bad_name", "duplicate")
COLUMNS = [
    "key", "source", "member", "sha1", "status", "reason", "age", "gender", "race", "datetime", "width", "height",
    "n_faces", "x1", "y1", "x2", "y2", "det_score", "landmarks", "crop", "bin", "split",
]  # fmt: skip


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write through a temporary file in the same folder, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes files private; give them the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_parquet(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def load_manifest(data_dir: Path) -> pd.DataFrame:
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        raise FaceageError(
            f"{data_dir}: no {MANIFEST}; prepare the data first: faceage prepare UTKFace.tar.gz --out {data_dir}"
        )
    return pd.read_parquet(path)


def load_meta(data_dir: Path) -> dict:
    path = Path(data_dir) / META
    if not path.is_file():
        raise FaceageError(f"{data_dir}: no {META}; run faceage prepare again with --out {data_dir}")
    return json.loads(path.read_text())


def quality_report(manifest: pd.DataFrame) -> pd.DataFrame:
    """Rows that cannot be used for training, with the reason: the data-quality report."""
    bad = manifest[manifest["status"] != "ok"]
    return bad[["key", "status", "reason", "sha1"]].sort_values(["status", "key"]).reset_index(drop=True)
