"""Age-estimation metrics on arrays (numpy only), shared by training summaries and evaluation."""

from __future__ import annotations

import numpy as np

# NIST FATE AEV-style age bands
AGE_BANDS = ((0, 12), (13, 17), (18, 24), (25, 39), (40, 59), (60, None))


def band_label(low: int, high: int | None) -> str:
    return f"{low}+" if high is None else f"{low}-{high}"


def band_errors(truth: np.ndarray, estimate: np.ndarray) -> list[dict]:
    """Per age band of the true age: n, MAE and signed bias (estimate - truth; positive = aged up)."""
    truth, estimate = np.asarray(truth, dtype=float), np.asarray(estimate, dtype=float)
    rows = []
    for low, high in AGE_BANDS:
        mask = (truth >= low) & (truth <= (np.inf if high is None else high + 0.999))
        error = estimate[mask] - truth[mask]
        rows.append(
            {
                "band": band_label(low, high),
                "n": int(mask.sum()),
                "mae": round(float(np.abs(error).mean()), 3) if mask.any() else None,
                "bias": round(float(error.mean()), 3) if mask.any() else None,
            }
        )
    return rows
