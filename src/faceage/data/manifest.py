"""The manifest: one row per source image (``DATA_DIR/manifest.parquet``), and the data-quality report.

Columns: key, source, member, sha1, status (ok / no_face / unreadable / bad_name / duplicate), reason, age, gender,
race, datetime, width, height, n_faces, x1, y1, x2, y2, det_score, landmarks (10 numbers: x0, y0, … x4, y4), crop (path
relative to DATA_DIR), bin, split. Gender and race are kept for fairness audits only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from faceage.errors import FaceageError
from faceage.files import replacing

MANIFEST = "manifest.parquet"
QUALITY = "quality.csv"
META = "meta.json"
STATUSES = ("ok", "no_face", "unreadable", "bad_name", "duplicate")
COLUMNS = [
    "key", "source", "member", "sha1", "status", "reason", "age", "gender", "race", "datetime", "width", "height",
    "n_faces", "x1", "y1", "x2", "y2", "det_score", "landmarks", "crop", "bin", "split",
]  # fmt: skip


def atomic_write_parquet(frame: pd.DataFrame, path: Path) -> None:
    with replacing(path) as tmp:
        frame.to_parquet(tmp, index=False)


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
