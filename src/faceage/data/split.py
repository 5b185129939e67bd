"""Deterministic train/val/test split, stratified by age bin.

Each usable image gets a pseudo-random number from a hash of (seed, image content hash): no random generator state,
no dependence on file order, worker count or machine. Within each age bin the images are ordered by that number and
cut at the requested fractions, so every bin is split in the same proportions.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from faceage.bins import AgeBins
from faceage.errors import FaceageError

SPLITS = ("train", "val", "test")


def parse_fractions(text: str) -> tuple[float, float, float]:
    """ "70/15/15" or "0.7,0.15,0.15" → (0.7, 0.15, 0.15)."""
    parts = [p for p in text.replace(",", "/").split("/") if p.strip()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise FaceageError(f"cannot read split '{text}': write train/val/test, e.g. 70/15/15") from None
    if len(values) != 3 or any(v < 0 for v in values) or sum(values) <= 0:
        raise FaceageError(f"split '{text}' needs three non-negative parts, e.g. 70/15/15")
    total = sum(values)
    return tuple(v / total for v in values)  # type: ignore[return-value]


def hash_unit(seed: int, token: str) -> float:
    digest = hashlib.sha256(f"{seed}:{token}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(
    ages: pd.Series, tokens: pd.Series, bins: AgeBins, seed: int = 0, fractions=(0.7, 0.15, 0.15)
) -> pd.Series:
    """Split name for each row, stratified by ``bins`` of ``ages``; ``tokens`` (content hashes) drive the order."""
    result = pd.Series("", index=ages.index, dtype=object)
    if ages.empty:
        return result
    bin_index = pd.Series(bins.index(ages.to_numpy()), index=ages.index)
    units = tokens.map(lambda t: hash_unit(seed, t))
    for _, rows in bin_index.groupby(bin_index):
        order = units.loc[rows.index].sort_values(kind="stable").index
        n = len(order)
        n_train = int(round(n * fractions[0]))
        n_val = int(round(n * fractions[1]))
        n_train, n_val = min(n_train, n), min(n_val, n - min(n_train, n))
        labels = np.array(["train"] * n_train + ["val"] * n_val + ["test"] * (n - n_train - n_val), dtype=object)
        result.loc[order] = labels
    return result
