"""Fairness audit: accuracy and MAE per gender, per UTKFace ethnicity group and per crossing, with bootstrap intervals.

The labels are used only here, to measure whether the age model serves some groups worse; faceage never predicts
them. Rows without a label (a folder or CSV without gender/race columns) are left out of that grouping.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from faceage.data.utkface import GENDERS, RACES
from faceage.metrics import bootstrap_interval

GROUPINGS = {
    "gender": ["gender"],
    "ethnicity": ["race"],
    "gender x ethnicity": ["gender", "race"],
}
LABELS = {"gender": GENDERS, "race": RACES}


def _group_name(columns: list[str], key) -> str:
    values = key if isinstance(key, tuple) else (key,)
    return " / ".join(LABELS[c].get(int(v), str(v)) for c, v in zip(columns, values, strict=True))


def group_rows(predictions: pd.DataFrame, columns: list[str], n_resamples: int = 1000, seed: int = 0) -> list[dict]:
    """One row per group: n, five-bin accuracy and MAE, each with a 95% bootstrap interval.

    ``predictions`` needs the columns ``correct`` (bool), ``abs_error`` and the grouping columns; rows with a missing
    label are skipped."""
    labelled = predictions.dropna(subset=columns)
    rows = []
    for key, group in labelled.groupby([labelled[c].astype(int) for c in columns], sort=True):
        correct = group["correct"].to_numpy(dtype=float)
        error = group["abs_error"].to_numpy(dtype=float)
        acc_low, acc_high = bootstrap_interval(np.mean, correct, n_resamples=n_resamples, seed=seed)
        mae_low, mae_high = bootstrap_interval(np.mean, error, n_resamples=n_resamples, seed=seed)
        rows.append(
            {
                "group": _group_name(columns, key),
                "n": len(group),
                "acc": float(correct.mean()),
                "acc_low": acc_low,
                "acc_high": acc_high,
                "mae": float(error.mean()),
                "mae_low": mae_low,
                "mae_high": mae_high,
            }
        )
    return rows


def spread(rows: list[dict], metric: str, min_n: int = 30) -> dict | None:
    """Largest minus smallest value of ``metric`` across groups with at least ``min_n`` faces (smaller groups' figures
    are too noisy to rank); None when fewer than two groups qualify."""
    ranked = [r for r in rows if r["n"] >= min_n]
    if len(ranked) < 2:
        return None
    low = min(ranked, key=lambda r: r[metric])
    high = max(ranked, key=lambda r: r[metric])
    return {"metric": metric, "spread": high[metric] - low[metric], "lowest": low["group"], "highest": high["group"],
            "min_n": min_n}  # fmt: skip


def fairness_audit(predictions: pd.DataFrame, n_resamples: int = 1000, seed: int = 0) -> dict:
    """Group rows and spreads for every grouping whose labels are present."""
    audit = {}
    for name, columns in GROUPINGS.items():
        if not all(c in predictions and predictions[c].notna().any() for c in columns):
            continue
        rows = group_rows(predictions, columns, n_resamples=n_resamples, seed=seed)
        audit[name] = {"groups": rows, "acc_spread": spread(rows, "acc"), "mae_spread": spread(rows, "mae")}
    return audit
