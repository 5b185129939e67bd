"""A folder written by ``faceage prepare``, opened once: ``PreparedData.open(DATA_DIR)``.

It holds the manifest (one row per source image) and ``meta.json`` (bins, split fractions and seed, the sources), and
answers what training, the int8 check, the age offset, evaluation, the peer comparison and ``explore`` each used to
re-derive from a bare path: the bins, the usable faces, one split (with the images where preparation found no face,
assigned to splits by the same content hash), crop paths and the original files behind rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from faceage.bins import AgeBins
from faceage.data.manifest import load_manifest, load_meta
from faceage.data.split import hash_unit
from faceage.detect.align import DEFAULT_CROP_SIZE
from faceage.errors import FaceageError

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)


@dataclass(frozen=True)
class PreparedData:
    root: Path
    manifest: pd.DataFrame
    meta: dict

    @classmethod
    def open(cls, data_dir: Path | str) -> PreparedData:
        """The folder's manifest and meta.json, or a message saying to prepare it."""
        root = Path(data_dir)
        return cls(root, load_manifest(root), load_meta(root))

    @classmethod
    def of(cls, data: PreparedData | Path | str) -> PreparedData:
        """``data`` itself, or the folder it names opened (for functions that take either)."""
        return data if isinstance(data, PreparedData) else cls.open(data)

    def __str__(self) -> str:
        return str(self.root)

    @property
    def bins(self) -> AgeBins:
        return AgeBins.parse(self.meta["bins"])

    @property
    def fractions(self) -> tuple[float, float, float]:
        return tuple(self.meta.get("fractions", DEFAULT_FRACTIONS))

    @property
    def crop_size(self) -> int:
        """Side of the folder's aligned crops in pixels (``faceage prepare --crop-size``)."""
        return int(self.meta.get("crop", {}).get("crop_size", DEFAULT_CROP_SIZE))

    @property
    def seed(self) -> int:
        return int(self.meta.get("seed", 0))

    @property
    def usable(self) -> pd.DataFrame:
        """The rows with an aligned face (status ok)."""
        return self.manifest[self.manifest["status"] == "ok"]

    def split(self, name: str, with_no_face: bool = False) -> pd.DataFrame:
        """The usable rows of split ``name``; ``with_no_face``: also the images of that split where preparation found
        no face (their split comes from the same content hash as every other row's)."""
        if name not in SPLITS:
            raise FaceageError(f"unknown split '{name}'; choose train, val or test")
        manifest = self.manifest
        rows = manifest[(manifest["status"] == "ok") & (manifest["split"] == name)]
        if not with_no_face:
            return rows
        no_face = manifest[manifest["status"] == "no_face"]
        first, second, _ = self.fractions
        low, high = {"train": (0.0, first), "val": (first, first + second), "test": (first + second, 1.0)}[name]
        units = no_face["sha1"].map(lambda digest: hash_unit(self.seed, digest))
        return pd.concat([rows, no_face[(units >= low) & (units < high)]], ignore_index=True)

    def crop_path(self, crop: str | None) -> str:
        """The aligned crop's file for a manifest ``crop`` entry ("" when there is none)."""
        return str(self.root / crop) if isinstance(crop, str) and crop else ""

    @property
    def source_paths(self) -> list[Path]:
        return [Path(p) for p in self.meta.get("source_paths", {}).values()]

    def originals(self, keys: set[str]) -> Iterator[tuple[str, bytes]]:
        """(key, bytes) of the original files behind ``keys``, read from the sources recorded at preparation."""
        from faceage.data.sources import iter_items

        paths = self.source_paths
        missing = [p for p in paths if not p.exists()]
        if not paths or missing:
            raise FaceageError(
                f"{self.root}/meta.json does not point at readable sources ({missing or 'none recorded'}); "
                "re-run faceage prepare with the original archive"
            )
        for item in iter_items(paths):
            if item.key in keys:
                yield item.key, item.data
